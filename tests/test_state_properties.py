"""Properties of the pure core (fold, decide, attempt_outcome) and of the coordinator's logs.

Hypothesis generates saga definitions (1-4 steps, random retry policies, with
or without compensations, timeouts, a deadline) and scripts of what each
attempt does. The pure run drives decide -> outcome -> attempt_outcome ->
apply on a virtual time line; the checks are DESIGN.md's guarantees.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saga import Coordinator, EventStore, PermanentError, Retry, Saga, SagaStatus, StepContext, VirtualClock
from saga import events as ev
from saga._engine.decide import Record, Rest, StartAttempt, Wait, attempt_outcome, decide
from saga._engine.reading import load_state
from saga.state import ErrorInfo, SagaState, fold
from tests.helpers import Logged, WorkerDied, check_log_invariants, logged

T0 = datetime(2030, 1, 1, tzinfo=UTC)
LEASE = 30.0
MAX_ACTIONS = 1000

OUTCOMES = ("ok", "transient", "permanent", "timeout", "lost")


@dataclass(frozen=True)
class StepSpec:
    retry: Retry
    timeout: float | None
    compensation: Retry | None


@dataclass(frozen=True)
class SagaSpec:
    steps: tuple[StepSpec, ...]
    deadline: float | None


@dataclass(frozen=True)
class Outcome:
    kind: str
    duration: float


fixed = st.builds(
    lambda delay, attempts, max_elapsed: Retry.fixed(delay, attempts=attempts, max_elapsed=max_elapsed),
    st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    st.integers(1, 4),
    st.sampled_from([None, None, 2.0, 10.0]),
)
exponential = st.builds(
    lambda initial, multiplier, cap, attempts, jitter, max_elapsed: Retry.exponential(
        initial=initial, multiplier=multiplier, maximum=initial * cap, attempts=attempts,
        jitter=jitter, max_elapsed=max_elapsed,
    ),
    st.sampled_from([0.1, 0.5, 2.0]),
    st.sampled_from([1.0, 2.0, 3.0]),
    st.sampled_from([1.0, 4.0, 20.0]),
    st.integers(1, 4),
    st.booleans(),
    st.sampled_from([None, None, 3.0, 15.0]),
)
retries = st.one_of(fixed, exponential, st.just(Retry.none()))
compensation_retries = st.one_of(
    st.builds(lambda d, a: Retry.fixed(d, attempts=a), st.sampled_from([0.0, 1.0, 5.0]), st.integers(1, 3)),
    st.just(Retry.none()),
)
step_specs = st.builds(
    StepSpec,
    retry=retries,
    timeout=st.sampled_from([None, None, 1.0, 5.0]),
    compensation=st.one_of(st.none(), compensation_retries),
)
saga_specs = st.builds(
    SagaSpec,
    steps=st.lists(step_specs, min_size=1, max_size=4).map(tuple),
    deadline=st.sampled_from([None, None, 4.0, 20.0, 60.0]),
)
outcomes = st.builds(
    Outcome,
    kind=st.sampled_from(OUTCOMES),
    duration=st.sampled_from([0.0, 0.25, 2.0, 8.0]),
)
scripts = st.lists(outcomes, max_size=40)


def _noop(ctx: StepContext) -> None:
    return None


def build(spec: SagaSpec, fn: Any = _noop) -> Saga:
    """A saga from a spec; every step and compensation runs ``fn``."""
    saga = Saga("generated", deadline=spec.deadline)
    for i, s in enumerate(spec.steps):
        step = saga.step(name=f"s{i}", retry=s.retry, timeout=s.timeout)(fn)
        if s.compensation is not None:
            step.compensate(retry=s.compensation)(fn)
    return saga


@dataclass
class PureRun:
    log: list[ev.Event]
    states: list[SagaState]
    """``states[k]`` is the live state after the first ``k + 1`` events."""
    final: SagaState


def run_pure(
    saga: Saga, script: list[Outcome], *, cancel_at: int | None, operator_retry: bool
) -> PureRun:
    """Drive the pure core on a virtual time line, as a coordinator would."""
    now = T0
    deadline = now + timedelta(seconds=saga.deadline) if saga.deadline else None
    log: list[ev.Event] = []
    states: list[SagaState] = []
    state = SagaState("p-1")

    def record(e: ev.Event) -> None:
        state.apply(e)
        log.append(e)
        states.append(copy.deepcopy(state))

    record(ev.SagaStarted(name=saga.name, version=saga.version, input=None, deadline=deadline, at=now))
    steps: Iterator[Outcome] = iter(script)
    retried = False
    for n in range(MAX_ACTIONS):
        if n == cancel_at and state.status is SagaStatus.RUNNING:
            record(ev.SagaCancelRequested(reason="test", at=now))
        action = decide(state, saga, now)
        match action:
            case Rest():
                if state.status is SagaStatus.FAILED and operator_retry and not retried:
                    retried = True
                    record(ev.SagaRetryRequested(at=now))
                    continue
                return PureRun(log, states, state)
            case Record():
                assert action.events, "decide asked to record nothing"
                for e in action.events:
                    record(e)
            case Wait():
                assert action.until > now, "decide waits for a time already passed"
                now = action.until
            case StartAttempt():
                record(action.started(now))
                out = next(steps, Outcome("ok", 0.0))
                error: ErrorInfo | None = None
                if out.kind == "timeout" and action.timeout_at is not None:
                    now = max(now, action.timeout_at)
                    error = ErrorInfo("AttemptTimedOut", "ran past its limit", timed_out=True)
                elif out.kind in ("lost", "timeout"):
                    now += timedelta(seconds=LEASE)  # its worker died; the lease runs out
                    continue
                elif action.timeout_at is not None and now + timedelta(seconds=out.duration) > (
                    action.timeout_at
                ):
                    now = action.timeout_at
                    error = ErrorInfo("AttemptTimedOut", "ran past its limit", timed_out=True)
                else:
                    now += timedelta(seconds=out.duration)
                    if out.kind == "transient":
                        error = ErrorInfo("ConnectionError", "reset")
                    elif out.kind == "permanent":
                        error = ErrorInfo("PermanentError", "no", retryable=False)
                for e in attempt_outcome(state, saga, action, result={"ok": action.step},
                                         error=error, now=now):
                    record(e)
    raise AssertionError(f"no resting status after {MAX_ACTIONS} actions")


@settings(max_examples=300, deadline=None)
@given(
    spec=saga_specs,
    script=scripts,
    cancel_at=st.one_of(st.none(), st.integers(0, 12)),
    operator_retry=st.booleans(),
)
def test_pure_runs_keep_the_guarantees(
    spec: SagaSpec, script: list[Outcome], cancel_at: int | None, operator_retry: bool
) -> None:
    saga = build(spec)
    run = run_pure(saga, script, cancel_at=cancel_at, operator_retry=operator_retry)
    # Replaying any prefix of the log gives the state the live run had at that point.
    for k, live in enumerate(run.states):
        replayed = fold("p-1", run.log[: k + 1])
        assert replayed == live, f"replay of the first {k + 1} events differs"
        assert replayed.view() == live.view()
        assert live.seq == k + 1
    assert not run.final.status.is_active
    assert isinstance(decide(fold("p-1", run.log), saga, T0 + timedelta(days=365)), Rest)
    check_log_invariants(
        [Logged(i + 1, e) for i, e in enumerate(run.log)], [s.name for s in saga.steps]
    )
    _check_outcome(run.final, run.log)


def _check_outcome(final: SagaState, log: list[ev.Event]) -> None:
    """The resting status agrees with what the log says happened."""
    names = [type(e).__name__ for e in log]
    if final.status is SagaStatus.COMPLETED:
        assert "CompensationStarted" not in names and names[-1] == "SagaCompleted"
    elif final.status is SagaStatus.COMPENSATED:
        assert names[-1] == "SagaCompensated"
        for s in final.steps.values():
            if s.needs_undo and s.compensation.phase.value != "pending":
                assert s.compensation.phase.value == "done"
    else:
        assert final.status is SagaStatus.FAILED and names[-1] == "SagaFailed"


@settings(max_examples=200, deadline=None)
@given(spec=saga_specs, script=scripts)
def test_a_run_is_a_function_of_its_inputs(spec: SagaSpec, script: list[Outcome]) -> None:
    """Deciding is pure: the same definition and script give the same log (jitter included)."""
    a = run_pure(build(spec), script, cancel_at=None, operator_retry=False)
    b = run_pure(build(spec), script, cancel_at=None, operator_retry=False)
    assert a.log == b.log


# -- the real coordinator -------------------------------------------------------------------


class _Script:
    """Feeds the scripted outcomes to the real step functions, in call order."""

    def __init__(self, script: list[Outcome], clock: VirtualClock) -> None:
        self.outcomes = iter(script)
        self.clock = clock
        self.release = threading.Event()

    def __call__(self, ctx: StepContext) -> Any:
        out = next(self.outcomes, Outcome("ok", 0.0))
        if out.kind == "lost":
            raise WorkerDied
        if out.kind == "timeout" and ctx.attempt_deadline is not None:
            self.release.wait(2.0)  # runs past its (real, short) limit; abandoned
            return "late"
        self.clock.advance(out.duration)
        if out.kind == "transient":
            raise ConnectionError("reset")
        if out.kind == "permanent":
            raise PermanentError("no")
        return {"step": ctx.step}


@pytest.fixture(scope="module")
def property_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventStore]:
    store = EventStore(f"sqlite:///{tmp_path_factory.mktemp('props') / 'saga.db'}")
    yield store
    store.close()


_counter = iter(range(1_000_000))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=saga_specs, script=scripts)
def test_coordinator_logs_keep_the_guarantees(
    property_db: EventStore, spec: SagaSpec, script: list[Outcome]
) -> None:
    # Real timeouts are real seconds: keep them short.
    spec = SagaSpec(
        tuple(StepSpec(s.retry, 0.05 if s.timeout else None, s.compensation) for s in spec.steps),
        spec.deadline,
    )
    clock = VirtualClock()
    fn = _Script(script, clock)
    saga = build(spec, fn)
    saga_id = f"p-{next(_counter)}"
    try:
        Coordinator(property_db, [saga], clock=clock).start("generated", None, saga_id=saga_id)
        for _ in range(200):
            coordinator = Coordinator(property_db, [saga], clock=clock, lease=LEASE, poll_interval=60.0)
            try:
                view = coordinator.run(saga_id)
                break
            except WorkerDied:
                clock.advance(LEASE + 1)
            finally:
                coordinator.close()
        else:
            raise AssertionError("the saga never came to rest")
    finally:
        fn.release.set()
    assert not view.status.is_active
    history = property_db.load(saga_id)
    check_log_invariants(logged(history), [s.name for s in saga.steps])
    events = [e.event for e in history]
    for k in range(1, len(events) + 1):
        assert fold(saga_id, events[:k]).seq == k
    assert fold(saga_id, events).view() == view == load_state(property_db, saga_id).view()
    _check_outcome(fold(saga_id, events), events)
    assert property_db.summary(saga_id).status is view.status


def test_generated_runs_reach_every_resting_status() -> None:
    """The generators are not stuck in one corner: the pure runs end in every resting status."""
    seen: set[SagaStatus] = set()

    @settings(max_examples=200, deadline=None, database=None)
    @given(spec=saga_specs, script=scripts)
    def collect(spec: SagaSpec, script: list[Outcome]) -> None:
        seen.add(run_pure(build(spec), script, cancel_at=None, operator_retry=False).final.status)

    collect()
    assert seen == {SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED}

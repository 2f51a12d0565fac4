"""Retry policies: the delays recorded in the log, attempt limits, max_elapsed, error filters."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from saga import (
    Coordinator,
    DefinitionError,
    EventStore,
    PermanentError,
    PolicyError,
    Retry,
    Saga,
    SagaError,
    SagaStatus,
    StepContext,
    VirtualClock,
)
from saga import events as ev
from tests.helpers import logged, loose, of_type, open_store, types


def _failing_saga(retry: Retry, error: type[BaseException] = RuntimeError, *,
                  fail_times: int | None = None) -> Saga:
    """A one-step saga whose step raises ``error`` (``fail_times`` times, or always)."""
    saga = Saga("retrying")
    calls: list[int] = []

    @saga.step(retry=retry)
    def flaky(ctx: StepContext) -> dict[str, int]:
        calls.append(ctx.attempt)
        if fail_times is None or len(calls) <= fail_times:
            raise error(f"failure {len(calls)}")
        return {"attempt": ctx.attempt}

    return saga


def _failures(store: EventStore, saga_id: str) -> list[ev.StepAttemptFailed]:
    out = []
    for e in of_type(store, saga_id, "StepAttemptFailed"):
        assert isinstance(e.event, ev.StepAttemptFailed)
        out.append(e.event)
    return out


def _run(store: EventStore, clock: VirtualClock, saga: Saga, saga_id: str = "s-1") -> Any:
    coordinator = Coordinator(store, [saga], clock=clock, poll_interval=60.0)
    return coordinator.run(coordinator.start(saga.name, {}, saga_id=saga_id))


def test_fixed_delays_are_recorded_exactly(sqlite_store: EventStore, clock: VirtualClock) -> None:
    t0 = clock.now()
    view = _run(sqlite_store, clock, _failing_saga(Retry.fixed(2.5, attempts=3), fail_times=2))
    assert view.status is SagaStatus.COMPLETED
    assert view.steps["flaky"].attempts == 3
    failures = _failures(sqlite_store, "s-1")
    assert [f.next_attempt_at for f in failures] == [
        t0 + timedelta(seconds=2.5), t0 + timedelta(seconds=5.0)
    ]
    starts = of_type(sqlite_store, "s-1", "StepAttemptStarted")
    assert [s.event.at for s in starts] == [t0 + timedelta(seconds=x) for x in (0.0, 2.5, 5.0)]
    assert view.results["flaky"] == {"attempt": 3}


def test_exponential_delays_are_capped_and_attempts_count_the_first(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    t0 = clock.now()
    retry = Retry.exponential(initial=0.5, multiplier=2.0, maximum=3.0, attempts=5)
    view = _run(sqlite_store, clock, _failing_saga(retry))
    assert view.status is SagaStatus.COMPENSATED
    failures = _failures(sqlite_store, "s-1")
    assert len(failures) == 5 == len(of_type(sqlite_store, "s-1", "StepAttemptStarted"))
    delays = [(f.next_attempt_at - f.at).total_seconds() for f in failures[:-1]
              if f.next_attempt_at is not None]
    assert delays == [0.5, 1.0, 2.0, 3.0]
    assert failures[0].at == t0
    last = failures[-1]
    assert not last.retried and last.next_attempt_at is None
    assert last.gave_up == "all 5 attempts used"
    failed = of_type(sqlite_store, "s-1", "StepFailed")
    assert len(failed) == 1 and "all 5 attempts used" in failed[0].data["reason"]


def test_none_means_one_attempt(sqlite_store: EventStore, clock: VirtualClock) -> None:
    view = _run(sqlite_store, clock, _failing_saga(Retry.none()))
    assert view.status is SagaStatus.COMPENSATED
    assert view.steps["flaky"].attempts == 1
    (failure,) = _failures(sqlite_store, "s-1")
    assert failure.gave_up == "its one attempt used" and not failure.retried
    assert Retry.none().attempts == 1


def test_jittered_delays_stay_in_the_window_and_repeat(tmp_path: Path) -> None:
    retry = Retry.exponential(initial=1.0, multiplier=2.0, maximum=8.0, attempts=6, jitter=True)
    recorded: list[list[float]] = []
    for run in range(2):
        clock = VirtualClock()
        with open_store(f"sqlite:///{tmp_path / f'run{run}.db'}") as store:
            _run(store, clock, _failing_saga(retry), saga_id="order-7")
            recorded.append([
                (f.next_attempt_at - f.at).total_seconds()
                for f in _failures(store, "order-7") if f.next_attempt_at is not None
            ])
    assert len(recorded[0]) == 5
    windows = [1.0, 2.0, 4.0, 8.0, 8.0]
    for delay, window in zip(recorded[0], windows, strict=True):
        assert 0.0 <= delay <= window
    assert recorded[0] == recorded[1], "jitter is not repeatable for the same saga and step"
    # Different steps (seeds) draw different delays: the jitter is not a constant.
    draws = {retry.next_delay(attempt=1, elapsed=0.0, seed=f"saga-{i}/step/do")[0] for i in range(50)}
    assert len(draws) > 40
    assert all(d is not None and 0.0 <= d <= 1.0 for d in draws)


def test_max_elapsed_stops_a_retry_that_could_not_start_in_time(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    t0 = clock.now()
    view = _run(sqlite_store, clock, _failing_saga(Retry.fixed(2.0, attempts=None, max_elapsed=5.0)))
    assert view.status is SagaStatus.COMPENSATED
    starts = [s.event.at for s in of_type(sqlite_store, "s-1", "StepAttemptStarted")]
    assert starts == [t0, t0 + timedelta(seconds=2), t0 + timedelta(seconds=4)]
    last = _failures(sqlite_store, "s-1")[-1]
    assert last.at == t0 + timedelta(seconds=4)
    assert not last.retried
    assert last.gave_up is not None and "max_elapsed" in last.gave_up
    # The step failed at 4 s, when the next attempt (6 s) was known to be too late,
    # not at 6 s.
    (failed,) = of_type(sqlite_store, "s-1", "StepFailed")
    assert failed.event.at == t0 + timedelta(seconds=4)


def test_max_elapsed_counts_time_spent_in_attempts(tmp_path: Path) -> None:
    clock = VirtualClock()
    saga = Saga("slow")

    @saga.step(retry=Retry.fixed(1.0, attempts=10, max_elapsed=timedelta(seconds=10)))
    def slow(ctx: StepContext) -> None:
        clock.advance(4.0)
        raise RuntimeError("slow and wrong")

    with open_store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        t0 = clock.now()
        _run(store, clock, saga)
        starts = [s.event.at for s in of_type(store, "s-1", "StepAttemptStarted")]
        # 0 s: fails at 4 s, retry at 5 s; fails at 9 s, retry would start at 10 s: not scheduled.
        assert starts == [t0, t0 + timedelta(seconds=5)]


class Transient(Exception):
    pass


class Fatal(Exception):
    pass


@pytest.mark.parametrize(
    ("retry", "error", "attempts"),
    [
        (Retry.fixed(1.0, attempts=4, retry_on=[Transient]), Transient, 4),
        (Retry.fixed(1.0, attempts=4, retry_on=[Transient]), Fatal, 1),
        (Retry.fixed(1.0, attempts=4, give_up_on=[Fatal]), Fatal, 1),
        (Retry.fixed(1.0, attempts=4, give_up_on=[Fatal]), Transient, 4),
        (Retry.exponential(initial=1.0, attempts=4, retry_on=loose(Transient)), Transient, 4),
        (Retry.fixed(1.0, attempts=4), PermanentError, 1),
        (Retry.fixed(1.0, attempts=4, retry_on=[PermanentError]), PermanentError, 1),
    ],
    ids=["retry_on-match", "retry_on-other", "give_up_on-match", "give_up_on-other",
         "retry_on-bare-type", "permanent", "permanent-beats-retry_on"],
)
def test_retry_on_give_up_on_and_permanent_errors(
    sqlite_store: EventStore, clock: VirtualClock, retry: Retry, error: type[Exception],
    attempts: int,
) -> None:
    view = _run(sqlite_store, clock, _failing_saga(retry, error))
    assert view.status is SagaStatus.COMPENSATED
    assert view.steps["flaky"].attempts == attempts
    failures = _failures(sqlite_store, "s-1")
    assert [f.retried for f in failures] == [True] * (attempts - 1) + [False]
    last = failures[-1]
    assert last.error_type.endswith(error.__name__)
    assert last.message == f"failure {attempts}"
    assert last.gave_up is not None
    if attempts == 1:
        assert "not retried" in last.gave_up
    else:
        assert last.gave_up == "all 4 attempts used"


def test_permanent_error_skips_remaining_attempts(sqlite_store: EventStore, clock: VirtualClock) -> None:
    saga = Saga("permanent")

    @saga.step(retry=Retry.fixed(1.0, attempts=10))
    def first(ctx: StepContext) -> None:
        if ctx.attempt == 2:
            raise PermanentError("card declined")
        raise RuntimeError("network")

    view = _run(sqlite_store, clock, saga)
    assert view.status is SagaStatus.COMPENSATED
    assert view.steps["first"].attempts == 2
    assert types(sqlite_store, "s-1")[-3:] == ["StepFailed", "CompensationStarted", "SagaCompensated"]
    failures = _failures(sqlite_store, "s-1")
    assert failures[-1].error_type.endswith("PermanentError")
    assert failures[-1].message == "card declined"


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Retry.fixed(-1.0), "delay cannot be negative"),
        (lambda: Retry.fixed(float("nan")), "delay cannot be negative"),
        (lambda: Retry.fixed(loose("1")), "delay must be a number of seconds"),
        (lambda: Retry.fixed(1.0, attempts=0), "attempts must be a whole number of at least 1"),
        (lambda: Retry.fixed(1.0, attempts=loose(2.5)), "attempts must be a whole number"),
        (lambda: Retry.fixed(1.0, attempts=True), "attempts must be a whole number"),
        (lambda: Retry.fixed(1.0, max_elapsed=0), "max_elapsed must be positive"),
        (lambda: Retry.fixed(1.0, max_elapsed=-3.0), "max_elapsed must be positive"),
        (lambda: Retry.fixed(1.0, retry_on=loose([int])), "retry_on must hold exception types"),
        (lambda: Retry.fixed(1.0, give_up_on=loose(["ValueError"])), "give_up_on must hold exception types"),
        (lambda: Retry.exponential(initial=0), "initial must be positive"),
        (lambda: Retry.exponential(maximum=-1.0), "maximum must be positive"),
        (lambda: Retry.exponential(initial=2.0, maximum=1.0),
         "maximum (1s) cannot be less than initial (2s)"),
        (lambda: Retry.exponential(multiplier=0.5), "multiplier cannot be less than 1"),
        (lambda: Retry.exponential(multiplier=loose("2")), "multiplier must be a number"),
    ],
)
def test_invalid_policies_raise_policy_error(build: Any, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        build()
    assert message in str(info.value)
    assert isinstance(info.value, DefinitionError) and isinstance(info.value, SagaError)


def test_invalid_step_options_raise_policy_error() -> None:
    saga = Saga("options")

    def step(ctx: StepContext) -> None:
        return None

    with pytest.raises(PolicyError, match=r"retry must be a saga\.Retry"):
        saga.step(retry=loose(3))(step)
    with pytest.raises(PolicyError, match="timeout must be positive"):
        saga.step(timeout=0)(step)
    with pytest.raises(PolicyError, match="deadline must be positive"):
        Saga("late", deadline=-1)
    assert saga.steps == []


def test_timedelta_durations_are_accepted() -> None:
    retry = Retry.fixed(timedelta(milliseconds=1500), attempts=3, max_elapsed=timedelta(minutes=1))
    assert retry.max_elapsed == 60.0
    assert retry.next_delay(attempt=1, elapsed=0.0, seed="x") == (1.5, None)
    assert retry.next_delay(attempt=3, elapsed=0.0, seed="x") == (None, "all 3 attempts used")


def test_unlimited_attempts_keep_retrying() -> None:
    retry = Retry.fixed(0.5, attempts=None)
    assert retry.next_delay(attempt=10_000, elapsed=1e6, seed="x") == (0.5, None)


def test_policies_are_values_not_shared_state() -> None:
    a = Retry.fixed(1.0, attempts=3)
    with pytest.raises(AttributeError):
        a.attempts = 5  # type: ignore[misc]
    assert "fixed 1s, 3 attempts" in str(a)
    assert "within 5s" in str(Retry.fixed(1.0, max_elapsed=5.0))


def test_every_failure_is_in_the_log_with_its_next_time(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    view = _run(sqlite_store, clock, _failing_saga(Retry.fixed(3.0, attempts=3), fail_times=1))
    assert view.status is SagaStatus.COMPLETED
    items = logged(sqlite_store.load("s-1"))
    failed = [i for i in items if isinstance(i.event, ev.StepAttemptFailed)]
    started = [i for i in items if isinstance(i.event, ev.StepAttemptStarted)]
    assert len(failed) == 1 and len(started) == 2
    assert isinstance(failed[0].event, ev.StepAttemptFailed)
    assert failed[0].event.next_attempt_at == started[1].event.at


def test_the_nominal_schedule_and_jitter_are_public() -> None:
    exponential = Retry.exponential(initial=1.0, maximum=8.0, attempts=6)
    assert [exponential.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert not exponential.jitter
    jittered = Retry.exponential(initial=1.0, maximum=8.0, attempts=6, jitter=True)
    assert jittered.jitter
    assert [jittered.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    drawn, _ = jittered.next_delay(attempt=3, elapsed=0.0, seed="k")
    assert drawn is not None and 0.0 <= drawn <= jittered.delay(3)
    fixed = Retry.fixed(2.5, attempts=2)
    assert (fixed.delay(1), fixed.delay(7), fixed.jitter) == (2.5, 2.5, False)
    assert Retry.none().delay(1) == 0.0
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(PolicyError, match="attempt must be a whole number of at least 1"):
            fixed.delay(bad)  # type: ignore[arg-type]

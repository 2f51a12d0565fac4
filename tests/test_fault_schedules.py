"""Sagas under generated fault schedules, driven through hours of virtual time by the test plugin.

Each example injects into every step a run of failures (errors, hangs past
the step's timeout, or a permanent error) and into every compensation a run
of failures, then checks the outcome against a small model of DESIGN.md's
rules: which real functions ran, in which order, the final status, and the
log's invariants.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saga import EventStore, PermanentError, Retry, Saga, SagaStatus, StepContext
from saga.events import StepAttemptStarted
from saga.testing import SagaTestClock, SagaTestCoordinator

from .helpers import check_log_invariants, logged

ATTEMPTS = 3
COMPENSATION_ATTEMPTS = 2
HOUR = 3600.0


@dataclass(frozen=True)
class StepFaults:
    kind: str  # "error", "hang" or "permanent"
    failures: int  # how many forward attempts the fault fails
    compensation_failures: int


schedules = st.lists(
    st.builds(
        StepFaults,
        kind=st.sampled_from(["error", "hang", "permanent"]),
        failures=st.integers(0, ATTEMPTS + 1),
        compensation_failures=st.integers(0, COMPENSATION_ATTEMPTS + 1),
    ),
    min_size=1,
    max_size=4,
)


def _saga(n: int, ran: list[str]) -> Saga:
    saga = Saga("scheduled")
    for i in range(n):
        def forward(ctx: StepContext) -> str:
            ran.append(f"do {ctx.step}")
            return ctx.step

        def undo(ctx: StepContext) -> None:
            ran.append(f"undo {ctx.step}")

        step = saga.step(name=f"s{i}", retry=Retry.fixed(2 * HOUR, attempts=ATTEMPTS), timeout=HOUR)(
            forward
        )
        step.compensate(retry=Retry.fixed(HOUR, attempts=COMPENSATION_ATTEMPTS))(undo)
    return saga


def _expected(plan: list[StepFaults]) -> tuple[list[str], SagaStatus]:
    """What runs and how the saga ends, by DESIGN.md's rules."""
    ran: list[str] = []
    to_undo: list[str] = []
    for i, faults in enumerate(plan):
        name = f"s{i}"
        permanent = faults.kind == "permanent" and faults.failures > 0
        if permanent or faults.failures >= ATTEMPTS:
            if faults.kind == "hang":  # timed out: its effect is in doubt, so it is undone too
                to_undo.append(name)
            break
        ran.append(f"do {name}")
        to_undo.append(name)
    else:
        return ran, SagaStatus.COMPLETED
    for name in reversed(to_undo):
        if plan[int(name[1:])].compensation_failures >= COMPENSATION_ATTEMPTS:
            return ran, SagaStatus.FAILED
        ran.append(f"undo {name}")
    return ran, SagaStatus.COMPENSATED


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=schedules)
def test_a_fault_schedule_ends_as_the_rules_say(saga_store: EventStore, plan: list[StepFaults]) -> None:
    ran: list[str] = []
    saga = _saga(len(plan), ran)
    # One store for every example (fresh saga ids); one coordinator each, so faults end with it.
    with SagaTestCoordinator(saga_store, [saga], clock=SagaTestClock()) as coordinator:
        for i, faults in enumerate(plan):
            step = saga[f"s{i}"]
            if faults.failures:
                if faults.kind == "hang":
                    coordinator.hang(step, times=faults.failures)
                else:
                    error = PermanentError("no") if faults.kind == "permanent" else ConnectionError("down")
                    coordinator.fail(step, times=faults.failures, error=error)
            if faults.compensation_failures:
                coordinator.fail(step, times=faults.compensation_failures, compensation=True)
        saga_id = coordinator.start("scheduled", saga_id=uuid.uuid4().hex)
        view = coordinator.run_until_rest(saga_id)
        events = coordinator.events(saga_id)

    expected_ran, expected_status = _expected(plan)
    assert (ran, view.status) == (expected_ran, expected_status)
    check_log_invariants(logged(events), [s.name for s in saga.steps])
    # A hang ends exactly at the attempt's time limit, recorded in its start.
    by_seq = {e.seq: e.event for e in events}
    for e in events:
        if e.type == "StepAttemptFailed" and e.data["timed_out"]:
            started = by_seq[e.seq - 1]
            assert isinstance(started, StepAttemptStarted) and started.timeout_at == e.event.at

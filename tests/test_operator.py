"""Operator actions: cancel a running saga, retry a failed one, refuse them on other statuses."""

from __future__ import annotations

from datetime import timedelta

import pytest

from saga import (
    Coordinator,
    EventStore,
    InvalidInput,
    InvalidOperation,
    PermanentError,
    Retry,
    Saga,
    SagaError,
    SagaNotFound,
    SagaStatus,
    StepContext,
    VirtualClock,
)
from saga import events as ev
from tests.helpers import check_log_invariants, logged, of_type, snapshot, types


def _saga(undone: list[str], comp_failures: dict[str, int]) -> Saga:
    """``book`` then ``pay``; ``pay`` fails with a transient error on its first attempt."""
    saga = Saga("shop")

    @saga.step(retry=Retry.fixed(1.0, attempts=3))
    def book(ctx: StepContext) -> str:
        return "booked"

    @book.compensate(retry=Retry.fixed(5.0, attempts=2))
    def unbook(ctx: StepContext) -> None:
        if comp_failures.get("book", 0) > 0:
            comp_failures["book"] -= 1
            raise RuntimeError(f"undo failed at attempt {ctx.attempt}")
        undone.append("book")

    @saga.step(retry=Retry.fixed(600.0, attempts=3))
    def pay(ctx: StepContext) -> str:
        if ctx.input == "declined":
            raise PermanentError("declined")
        if ctx.attempt == 1:
            raise ConnectionError("bank busy")
        return "paid"

    return saga


def _coordinator(store: EventStore, saga: Saga, clock: VirtualClock) -> Coordinator:
    return Coordinator(store, [saga], clock=clock, poll_interval=60.0)


def test_cancel_a_saga_waiting_on_a_backoff_compensates_it(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    undone: list[str] = []
    coordinator = _coordinator(sqlite_store, _saga(undone, {}), clock)
    saga_id = coordinator.start("shop", None, saga_id="c")
    coordinator.work(until_idle=True)
    waiting = coordinator.get(saga_id)
    assert waiting.status is SagaStatus.RUNNING
    assert waiting.steps["pay"].next_attempt_at == clock.now() + timedelta(seconds=600)

    view = coordinator.cancel(saga_id, reason="customer asked")
    assert view.status is SagaStatus.RUNNING  # a worker does the compensating
    assert types(sqlite_store, saga_id)[-1] == "SagaCancelRequested"
    assert sqlite_store.due(clock.now()) == [saga_id]  # woken at once, not after the backoff
    # Cancelling again is a no-op.
    n = len(sqlite_store.load(saga_id))
    coordinator.cancel(saga_id, reason="again")
    assert len(sqlite_store.load(saga_id)) == n

    coordinator.work(until_idle=True)
    view = coordinator.get(saga_id)
    assert view.status is SagaStatus.COMPENSATED
    assert undone == ["book"]
    (started,) = of_type(sqlite_store, saga_id, "CompensationStarted")
    assert "customer asked" in started.data["reason"]
    # pay never succeeded and nothing about it is in doubt: it is not compensated,
    # and its pending retry never runs.
    assert view.steps["pay"].compensation is None
    assert len(of_type(sqlite_store, saga_id, "StepAttemptStarted")) == 2
    check_log_invariants(logged(sqlite_store.load(saga_id)), ["book", "pay"])


def test_compensation_failure_then_retry_with_a_fresh_budget(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    undone: list[str] = []
    failures = {"book": 3}  # attempts 1 and 2 exhaust the budget of 2; 3 fails, 4 succeeds
    coordinator = _coordinator(sqlite_store, _saga(undone, failures), clock)
    saga_id = coordinator.start("shop", "declined", saga_id="f")
    view = coordinator.run(saga_id)
    assert view.status is SagaStatus.FAILED
    assert view.steps["book"].compensation == "failed"
    assert view.steps["book"].compensation_attempts == 2
    assert view.reason is not None and "book" in view.reason
    assert types(sqlite_store, saga_id)[-2:] == ["CompensationFailed", "SagaFailed"]
    assert sqlite_store.find(status=SagaStatus.FAILED)[0].saga_id == saga_id
    assert sqlite_store.due(clock.now() + timedelta(days=1)) == []  # waits for an operator

    view = coordinator.retry(saga_id, reason="bank is back")
    assert view.status is SagaStatus.COMPENSATING
    assert types(sqlite_store, saga_id)[-1] == "SagaRetryRequested"
    view = coordinator.run(saga_id)
    assert view.status is SagaStatus.COMPENSATED
    assert undone == ["book"]
    comp = [e.event for e in sqlite_store.load(saga_id)
            if isinstance(e.event, ev.CompensationAttemptFailed | ev.CompensationAttemptStarted)]
    assert [(type(e).__name__, e.attempt) for e in comp] == [
        ("CompensationAttemptStarted", 1), ("CompensationAttemptFailed", 1),
        ("CompensationAttemptStarted", 2), ("CompensationAttemptFailed", 2),
        ("CompensationAttemptStarted", 3), ("CompensationAttemptFailed", 3),
        ("CompensationAttemptStarted", 4),
    ]
    third = comp[5]
    assert isinstance(third, ev.CompensationAttemptFailed)
    assert third.retried, "the retry did not open a fresh attempt budget"
    assert third.next_attempt_at == third.at + timedelta(seconds=5)
    assert types(sqlite_store, saga_id)[-2:] == ["StepCompensated", "SagaCompensated"]
    check_log_invariants(logged(sqlite_store.load(saga_id)), ["book", "pay"])


def test_retry_of_a_saga_that_fails_again_fails_again(sqlite_store: EventStore, clock: VirtualClock) -> None:
    failures = {"book": 10}
    coordinator = _coordinator(sqlite_store, _saga([], failures), clock)
    saga_id = coordinator.start("shop", "declined")
    assert coordinator.run(saga_id).status is SagaStatus.FAILED
    coordinator.retry(saga_id)
    view = coordinator.run(saga_id)
    assert view.status is SagaStatus.FAILED
    assert view.steps["book"].compensation_attempts == 4
    assert types(sqlite_store, saga_id).count("SagaFailed") == 2


def test_operator_actions_on_the_wrong_status_raise_and_write_nothing(
    sqlite_url: str, sqlite_store: EventStore, clock: VirtualClock
) -> None:
    comp_failures = {"book": 10}
    coordinator = _coordinator(sqlite_store, _saga([], comp_failures), clock)
    completed = coordinator.start("shop", None)
    coordinator.run(completed)
    failed = coordinator.start("shop", "declined")
    coordinator.run(failed)
    comp_failures["book"] = 1
    compensating = coordinator.start("shop", "declined")
    coordinator.work(until_idle=True)
    comp_failures["book"] = 0
    compensated = coordinator.start("shop", "declined")
    coordinator.run(compensated)
    running = coordinator.start("shop", None)
    statuses = {i: coordinator.get(i).status for i in (completed, failed, compensating, compensated)}
    assert statuses == {
        completed: SagaStatus.COMPLETED, failed: SagaStatus.FAILED,
        compensating: SagaStatus.COMPENSATING, compensated: SagaStatus.COMPENSATED,
    }
    before = snapshot(sqlite_url)
    for saga_id in (completed, failed, compensating, compensated):
        with pytest.raises(InvalidOperation, match=f"saga {saga_id} is {statuses[saga_id].value}"):
            coordinator.cancel(saga_id)
    for saga_id in (completed, compensating, compensated, running):
        with pytest.raises(InvalidOperation, match="only a failed or parked saga can be retried"):
            coordinator.retry(saga_id)
    for action in (coordinator.cancel, coordinator.retry, coordinator.get, sqlite_store.load):
        with pytest.raises(SagaNotFound):
            action("no-such-saga")
    with pytest.raises(InvalidInput):
        coordinator.cancel(running, reason=42)  # type: ignore[arg-type]
    assert snapshot(sqlite_url) == before
    assert issubclass(InvalidOperation, SagaError)


def test_cancel_while_an_attempt_runs_records_its_outcome_then_compensates(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    saga = Saga("ship")
    undone: list[str] = []
    operator = Coordinator(sqlite_store, clock=clock)  # another process, in effect

    @saga.step(retry=Retry.none())
    def pack(ctx: StepContext) -> str:
        operator.cancel(ctx.saga_id, reason="changed my mind")  # lands mid-attempt
        return "packed"

    @pack.compensate(retry=Retry.none())
    def unpack(ctx: StepContext) -> None:
        undone.append(ctx.result)

    @saga.step(retry=Retry.none())
    def send(ctx: StepContext) -> str:
        raise AssertionError("no forward step starts after a cancel")

    view = _coordinator(sqlite_store, saga, clock).execute("ship", None, saga_id="m")
    assert view.status is SagaStatus.COMPENSATED
    # The attempt's real outcome is recorded after the operator's event (not as lost),
    # so its result reaches the compensation.
    assert types(sqlite_store, "m")[:5] == [
        "SagaStarted", "StepAttemptStarted", "SagaCancelRequested", "StepSucceeded",
        "CompensationStarted",
    ]
    assert of_type(sqlite_store, "m", "StepAttemptFailed") == []
    assert undone == ["packed"]
    check_log_invariants(logged(sqlite_store.load("m")), ["pack", "send"])

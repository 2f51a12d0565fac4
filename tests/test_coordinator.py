"""The coordinator on real SQLite files: statuses, timeouts, deadlines, compensation, lost attempts."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import tenacity

from saga import (
    Coordinator,
    EventStore,
    PermanentError,
    Retry,
    Saga,
    SagaIdConflict,
    SagaStatus,
    StepContext,
    VirtualClock,
)
from saga import events as ev
from saga._engine.reading import view as read_view
from saga.operators.actions import skip
from saga.operators.fork import fork
from tests.helpers import WorkerDied, check_log_invariants, logged, of_type, open_store, snapshot, types


def _coordinator(store: EventStore, saga: Saga, clock: VirtualClock) -> Coordinator:
    return Coordinator(store, [saga], clock=clock, poll_interval=60.0)


def _trip(undo_log: list[str], *, fail_at: str | None = None) -> Saga:
    """Three steps; ``hotel`` has no compensation; ``fail_at`` raises PermanentError."""
    saga = Saga("trip")

    @saga.step(retry=Retry.fixed(1.0, attempts=2))
    def flight(ctx: StepContext) -> dict[str, str]:
        if fail_at == "flight":
            raise PermanentError("no seats")
        return {"flight": "SK123"}

    @flight.compensate(retry=Retry.fixed(1.0, attempts=2))
    def cancel_flight(ctx: StepContext) -> None:
        undo_log.append("flight")

    @saga.step(retry=Retry.fixed(1.0, attempts=2))
    def hotel(ctx: StepContext) -> dict[str, str]:
        if fail_at == "hotel":
            raise PermanentError("full")
        return {"hotel": "Grand"}

    @saga.step(retry=Retry.fixed(1.0, attempts=2))
    def car(ctx: StepContext) -> dict[str, str]:
        if fail_at == "car":
            raise PermanentError("no cars")
        return {"car": "Volvo"}

    @car.compensate
    def return_car(ctx: StepContext) -> None:
        undo_log.append("car")

    @saga.step(retry=Retry.fixed(1.0, attempts=2))
    def pay(ctx: StepContext) -> dict[str, int]:
        if fail_at == "pay":
            raise PermanentError("card declined")
        return {"paid": 100}

    @pay.compensate
    def refund(ctx: StepContext) -> None:
        undo_log.append("pay")

    return saga


def test_completed_saga(sqlite_store: EventStore, clock: VirtualClock) -> None:
    undone: list[str] = []
    coordinator = _coordinator(sqlite_store, _trip(undone), clock)
    saga_id = coordinator.start("trip", {"city": "Oslo"}, saga_id="order-42")
    assert coordinator.get(saga_id).status is SagaStatus.RUNNING
    view = coordinator.run(saga_id)
    assert view.status is SagaStatus.COMPLETED
    assert view.results == {"flight": {"flight": "SK123"}, "hotel": {"hotel": "Grand"},
                            "car": {"car": "Volvo"}, "pay": {"paid": 100}}
    assert all(s.attempts == 1 and s.status == "succeeded" for s in view.steps.values())
    assert types(sqlite_store, saga_id) == [
        "SagaStarted",
        *["StepAttemptStarted", "StepSucceeded"] * 4,
        "SagaCompleted",
    ]
    assert undone == []
    assert read_view(sqlite_store, saga_id) == view
    assert sqlite_store.summary(saga_id).status is SagaStatus.COMPLETED
    check_log_invariants(logged(sqlite_store.load(saga_id)), ["flight", "hotel", "car", "pay"])


def test_compensation_runs_newest_first_and_skips_steps_without_one(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    undone: list[str] = []
    coordinator = _coordinator(sqlite_store, _trip(undone, fail_at="pay"), clock)
    view = coordinator.run(coordinator.start("trip", {}, saga_id="t"))
    assert view.status is SagaStatus.COMPENSATED
    assert undone == ["car", "flight"]
    comp = [e.event for e in of_type(sqlite_store, "t", "StepCompensated")]
    assert [c.step for c in comp if isinstance(c, ev.StepCompensated)] == ["car", "flight"]
    starts = of_type(sqlite_store, "t", "CompensationAttemptStarted")
    assert [s.data["step"] for s in starts] == ["car", "flight"]
    assert view.steps["hotel"].compensation is None
    assert view.steps["car"].compensation == "compensated"
    assert view.steps["pay"].status == "failed"
    assert view.steps["pay"].compensation is None  # the failed step did nothing to undo
    (started,) = of_type(sqlite_store, "t", "CompensationStarted")
    assert started.data["step"] == "pay" and "card declined" in started.data["reason"]
    assert types(sqlite_store, "t")[-1] == "SagaCompensated"
    check_log_invariants(logged(sqlite_store.load("t")), ["flight", "hotel", "car", "pay"])


def test_first_step_failing_compensates_nothing(sqlite_store: EventStore, clock: VirtualClock) -> None:
    undone: list[str] = []
    coordinator = _coordinator(sqlite_store, _trip(undone, fail_at="flight"), clock)
    view = coordinator.run(coordinator.start("trip", {}, saga_id="t"))
    assert view.status is SagaStatus.COMPENSATED
    assert undone == []
    assert "CompensationAttemptStarted" not in types(sqlite_store, "t")
    assert list(view.steps) == ["flight"]


def test_idempotent_start(sqlite_url: str, sqlite_store: EventStore, clock: VirtualClock) -> None:
    coordinator = _coordinator(sqlite_store, _trip([]), clock)
    assert coordinator.start("trip", {"city": "Oslo"}, saga_id="order-42") == "order-42"
    before = snapshot(sqlite_url)
    clock.advance(5)
    assert coordinator.start("trip", {"city": "Oslo"}, saga_id="order-42") == "order-42"
    assert snapshot(sqlite_url) == before
    with pytest.raises(SagaIdConflict, match="order-42"):
        coordinator.start("trip", {"city": "Bergen"}, saga_id="order-42")
    assert snapshot(sqlite_url) == before
    # Without an id each start is a new saga.
    a, b = coordinator.start("trip", {}), coordinator.start("trip", {})
    assert a != b


def test_execute_starts_and_drives_inline(sqlite_store: EventStore, clock: VirtualClock) -> None:
    coordinator = _coordinator(sqlite_store, _trip([]), clock)
    view = coordinator.execute("trip", {"city": "Oslo"}, saga_id="x")
    assert view.status is SagaStatus.COMPLETED
    assert view.saga_id == "x" and view.input == {"city": "Oslo"}
    assert read_view(sqlite_store, "x") == view
    n = len(sqlite_store.load("x"))
    # Executing the same saga again returns its outcome and writes nothing.
    again = coordinator.execute("trip", {"city": "Oslo"}, saga_id="x")
    assert again.status is SagaStatus.COMPLETED and len(sqlite_store.load("x")) == n
    with pytest.raises(SagaIdConflict):
        coordinator.execute("trip", {"city": "Rome"}, saga_id="x")
    summary = sqlite_store.summary("x")
    assert summary.lease_owner is None and summary.last_seq == n


def test_execute_with_a_failing_saga_compensates(sqlite_store: EventStore, clock: VirtualClock) -> None:
    undone: list[str] = []
    coordinator = _coordinator(sqlite_store, _trip(undone, fail_at="car"), clock)
    view = coordinator.execute("trip", {}, saga_id="y")
    assert view.status is SagaStatus.COMPENSATED
    assert undone == ["flight"]


def test_work_drives_due_sagas_and_leaves_later_retries_waiting(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    saga = Saga("waits")

    @saga.step(retry=Retry.fixed(300.0, attempts=2))
    def once_flaky(ctx: StepContext) -> str:
        if ctx.attempt == 1:
            raise ConnectionError("reset")
        return "ok"

    coordinator = _coordinator(sqlite_store, saga, clock)
    ids = [coordinator.start("waits", i) for i in range(3)]
    coordinator.work(until_idle=True)
    for i in ids:
        view = coordinator.get(i)
        assert view.status is SagaStatus.RUNNING
        assert view.steps["once_flaky"].next_attempt_at == clock.now() + timedelta(seconds=300)
    assert sqlite_store.due(clock.now()) == []
    assert sqlite_store.next_wake() == clock.now() + timedelta(seconds=300)
    clock.advance(299)
    coordinator.work(until_idle=True)
    assert {coordinator.get(i).status for i in ids} == {SagaStatus.RUNNING}
    clock.advance(1)
    coordinator.work(until_idle=True)
    assert {coordinator.get(i).status for i in ids} == {SagaStatus.COMPLETED}


# -- timeouts -------------------------------------------------------------------------------


def test_sync_step_timeout_abandons_the_attempt_and_ignores_its_late_result(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    late_done = threading.Event()
    saga = Saga("slow-sync")

    @saga.step(retry=Retry.fixed(1.0, attempts=3), timeout=0.2)
    def slow(ctx: StepContext) -> dict[str, int]:
        if ctx.attempt == 1:
            threading.Event().wait(0.6)
            late_done.set()
            return {"attempt": 1}
        return {"attempt": ctx.attempt}

    coordinator = _coordinator(sqlite_store, saga, clock)
    view = coordinator.run(coordinator.start("slow-sync", None, saga_id="s"))
    assert view.status is SagaStatus.COMPLETED
    (failed,) = [e.event for e in of_type(sqlite_store, "s", "StepAttemptFailed")]
    assert isinstance(failed, ev.StepAttemptFailed)
    assert failed.timed_out and failed.retried and failed.error_type == "AttemptTimedOut"
    assert failed.next_attempt_at == failed.at + timedelta(seconds=1)
    started = [e.event for e in of_type(sqlite_store, "s", "StepAttemptStarted")]
    assert isinstance(started[0], ev.StepAttemptStarted)
    assert started[0].timeout_at == started[0].at + timedelta(seconds=0.2)
    assert view.steps["slow"].in_doubt
    n = len(sqlite_store.load("s"))
    assert late_done.wait(5), "the abandoned attempt never finished"
    assert len(sqlite_store.load("s")) == n
    assert coordinator.get("s").results == {"slow": {"attempt": 2}}


def test_async_step_timeout_cancels_the_attempt(sqlite_store: EventStore, clock: VirtualClock) -> None:
    cancelled: list[int] = []
    saga = Saga("slow-async")

    @saga.step(retry=Retry.fixed(1.0, attempts=3), timeout=0.2)
    async def slow(ctx: StepContext) -> str:
        if ctx.attempt == 1:
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled.append(ctx.attempt)
                raise
        return "done"

    coordinator = _coordinator(sqlite_store, saga, clock)
    view = coordinator.run(coordinator.start("slow-async", None, saga_id="a"))
    assert view.status is SagaStatus.COMPLETED
    assert cancelled == [1]
    assert view.results == {"slow": "done"} and view.steps["slow"].attempts == 2
    (failed,) = [e.event for e in of_type(sqlite_store, "a", "StepAttemptFailed")]
    assert isinstance(failed, ev.StepAttemptFailed) and failed.timed_out and failed.retried


def test_async_step_raising_its_own_timeout_error_is_not_a_timeout(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    saga = Saga("own-timeout")

    @saga.step(retry=Retry.none(), timeout=10.0)
    async def call(ctx: StepContext) -> None:
        raise TimeoutError("upstream said so")

    coordinator = _coordinator(sqlite_store, saga, clock)
    coordinator.run(coordinator.start("own-timeout", None, saga_id="o"))
    (failed,) = [e.event for e in of_type(sqlite_store, "o", "StepAttemptFailed")]
    assert isinstance(failed, ev.StepAttemptFailed)
    assert not failed.timed_out and failed.error_type == "TimeoutError"


def test_timed_out_step_is_compensated_as_in_doubt(sqlite_store: EventStore, clock: VirtualClock) -> None:
    release = threading.Event()
    undone: list[tuple[str, object]] = []
    saga = Saga("doubt")

    @saga.step(retry=Retry.fixed(1.0, attempts=3), timeout=0.05)
    def charge(ctx: StepContext) -> str:
        if ctx.attempt == 1:
            release.wait(2)
            return "charged late"
        raise PermanentError("card blocked")

    @charge.compensate
    def refund(ctx: StepContext) -> None:
        undone.append((ctx.step, ctx.result))

    try:
        coordinator = _coordinator(sqlite_store, saga, clock)
        view = coordinator.run(coordinator.start("doubt", None, saga_id="d"))
    finally:
        release.set()
    assert view.status is SagaStatus.COMPENSATED
    assert undone == [("charge", None)]  # no result: the step never succeeded
    step = view.steps["charge"]
    assert step.in_doubt and step.status == "failed" and step.compensation == "compensated"
    check_log_invariants(logged(sqlite_store.load("d")), ["charge"])


def test_step_that_fails_without_doubt_is_not_compensated(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    undone: list[str] = []
    saga = Saga("clean-failure")

    @saga.step(retry=Retry.fixed(1.0, attempts=2))
    def charge(ctx: StepContext) -> None:
        raise RuntimeError("declined")

    @charge.compensate
    def refund(ctx: StepContext) -> None:
        undone.append("refund")

    coordinator = _coordinator(sqlite_store, saga, clock)
    view = coordinator.run(coordinator.start("clean-failure", None, saga_id="c"))
    assert view.status is SagaStatus.COMPENSATED
    assert undone == [] and not view.steps["charge"].in_doubt


# -- the saga deadline ----------------------------------------------------------------------


def test_deadline_stops_retries_that_would_start_after_it(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    undone: list[str] = []
    saga = Saga("deadline", deadline=10.0)

    @saga.step(retry=Retry.fixed(1.0))
    def book(ctx: StepContext) -> str:
        return "booked"

    @book.compensate
    def unbook(ctx: StepContext) -> None:
        undone.append("book")

    @saga.step(retry=Retry.fixed(4.0, attempts=10))
    def pay(ctx: StepContext) -> None:
        raise ConnectionError("bank down")

    t0 = clock.now()
    coordinator = _coordinator(sqlite_store, saga, clock)
    view = coordinator.run(coordinator.start("deadline", None, saga_id="dl"))
    assert view.status is SagaStatus.COMPENSATED
    assert view.deadline == t0 + timedelta(seconds=10)
    starts = [e.event.at for e in of_type(sqlite_store, "dl", "StepAttemptStarted")]
    # book at 0; pay at 0, 4, 8; a fourth attempt at 12 would start after the deadline.
    assert starts == [t0, t0, t0 + timedelta(seconds=4), t0 + timedelta(seconds=8)]
    last = [e.event for e in of_type(sqlite_store, "dl", "StepAttemptFailed")][-1]
    assert isinstance(last, ev.StepAttemptFailed)
    assert not last.retried and last.gave_up is not None and "deadline" in last.gave_up
    assert last.at == t0 + timedelta(seconds=8)
    assert undone == ["book"]
    check_log_invariants(logged(sqlite_store.load("dl")), ["book", "pay"])


def test_no_forward_attempt_starts_after_the_deadline(sqlite_store: EventStore, clock: VirtualClock) -> None:
    ran: list[str] = []
    undone: list[str] = []
    saga = Saga("late", deadline=timedelta(seconds=30))

    @saga.step
    def slow(ctx: StepContext) -> str:
        ran.append("slow")
        clock.advance(31)  # the step itself takes past the deadline
        return "done"

    @slow.compensate
    def undo_slow(ctx: StepContext) -> None:
        undone.append("slow")

    @saga.step
    def never(ctx: StepContext) -> None:
        ran.append("never")

    coordinator = _coordinator(sqlite_store, saga, clock)
    view = coordinator.run(coordinator.start("late", None, saga_id="l"))
    assert view.status is SagaStatus.COMPENSATED
    assert ran == ["slow"] and undone == ["slow"]
    (started,) = of_type(sqlite_store, "l", "CompensationStarted")
    assert "deadline" in started.data["reason"]
    assert "never" not in view.steps


def test_attempt_timeout_is_capped_by_the_deadline(sqlite_store: EventStore, clock: VirtualClock) -> None:
    saga = Saga("capped", deadline=5.0)

    @saga.step(timeout=60.0)
    def quick(ctx: StepContext) -> str | None:
        return None if ctx.attempt_deadline is None else ctx.attempt_deadline.isoformat()

    t0 = clock.now()
    coordinator = _coordinator(sqlite_store, saga, clock)
    view = coordinator.run(coordinator.start("capped", None, saga_id="c"))
    assert view.results["quick"] == (t0 + timedelta(seconds=5)).isoformat()


# -- lost attempts --------------------------------------------------------------------------


def test_attempt_left_by_a_dead_worker_is_recorded_as_lost_and_retried(
    sqlite_url: str, clock: VirtualClock
) -> None:
    calls: list[int] = []
    undone: list[str] = []
    saga = Saga("lost")

    @saga.step(retry=Retry.fixed(2.0, attempts=3))
    def ship(ctx: StepContext) -> str:
        calls.append(ctx.attempt)
        return "shipped"

    @ship.compensate
    def unship(ctx: StepContext) -> None:
        undone.append("ship")

    with open_store(sqlite_url) as store:
        first = Coordinator(store, [saga], clock=clock, lease=10.0, worker_id="dead")
        saga_id = first.start("lost", None, saga_id="L")
        now = clock.now()
        # What a worker that died mid-attempt leaves: the attempt's start, its lease.
        store.append(
            saga_id, 1, [ev.StepAttemptStarted(step="ship", attempt=1, at=now)],
            status=SagaStatus.RUNNING, wake_at=now, now=now,
            owner="dead", lease_until=now + timedelta(seconds=10),
        )
    with open_store(sqlite_url) as store:
        second = Coordinator(store, [saga], clock=clock, lease=10.0, poll_interval=60.0)
        assert store.due(clock.now()) == []
        assert second.work(until_idle=True) == 0  # the lease is still live
        assert calls == []
        clock.advance(10.5)
        assert store.due(clock.now()) == [saga_id]
        second.work(until_idle=True)
        view = second.get(saga_id)
        assert view.status is SagaStatus.RUNNING and calls == []  # waiting on the backoff
        clock.advance(2)
        second.work(until_idle=True)
        view = second.get(saga_id)
        assert view.status is SagaStatus.COMPLETED
        assert calls == [2]
        (failed,) = [e.event for e in of_type(store, saga_id, "StepAttemptFailed")]
        assert isinstance(failed, ev.StepAttemptFailed)
        assert failed.lost and failed.retried and not failed.timed_out
        assert failed.error_type == "AttemptLost" and failed.attempt == 1
        assert failed.next_attempt_at == failed.at + timedelta(seconds=2)
        assert view.steps["ship"].in_doubt and view.steps["ship"].attempts == 2
        check_log_invariants(logged(store.load(saga_id)), ["ship"])


def test_step_lost_every_time_runs_out_of_attempts_and_compensates(
    sqlite_url: str, clock: VirtualClock
) -> None:
    calls: list[int] = []
    undone: list[str] = []
    saga = Saga("crashy")

    @saga.step(retry=Retry.fixed(1.0, attempts=3))
    def reserve(ctx: StepContext) -> str:
        return "reserved"

    @reserve.compensate
    def release(ctx: StepContext) -> None:
        undone.append("reserve")

    @saga.step(retry=Retry.fixed(1.0, attempts=3))
    def explode(ctx: StepContext) -> None:
        calls.append(ctx.attempt)
        raise WorkerDied

    @explode.compensate
    def unexplode(ctx: StepContext) -> None:
        undone.append("explode")

    with open_store(sqlite_url) as store:
        saga_id = Coordinator(store, [saga], clock=clock).start("crashy", None, saga_id="K")
    for _ in range(3):
        with open_store(sqlite_url) as store:
            worker = Coordinator(store, [saga], clock=clock, lease=5.0, poll_interval=60.0)
            with pytest.raises(WorkerDied):
                worker.run(saga_id)
            worker.close()
        clock.advance(6)
    with open_store(sqlite_url) as store:
        worker = Coordinator(store, [saga], clock=clock, lease=5.0, poll_interval=60.0)
        view = worker.run(saga_id)
        assert view.status is SagaStatus.COMPENSATED
        assert calls == [1, 2, 3]
        assert undone == ["explode", "reserve"]
        failures = [e.event for e in of_type(store, saga_id, "StepAttemptFailed")]
        assert [f.lost for f in failures if isinstance(f, ev.StepAttemptFailed)] == [True] * 3
        assert [f.retried for f in failures if isinstance(f, ev.StepAttemptFailed)] == [True, True, False]
        assert view.steps["explode"].in_doubt
        check_log_invariants(logged(store.load(saga_id)), ["reserve", "explode"])


def test_a_live_lease_keeps_a_second_coordinator_out(sqlite_store: EventStore, clock: VirtualClock) -> None:
    saga = Saga("held")

    @saga.step
    def only(ctx: StepContext) -> int:
        return 1

    coordinator = _coordinator(sqlite_store, saga, clock)
    saga_id = coordinator.start("held", None)
    now = clock.now()
    sqlite_store.append(saga_id, 1, [], status=SagaStatus.RUNNING, wake_at=now, now=now,
                        owner="other", lease_until=now + timedelta(seconds=20))
    # run() waits (on the virtual clock) for the other lease to expire, then finishes.
    view = coordinator.run(saga_id)
    assert view.status is SagaStatus.COMPLETED
    started = of_type(sqlite_store, saga_id, "StepAttemptStarted")[0].event
    assert started.at >= now + timedelta(seconds=20)


# -- every status and every event type ------------------------------------------------------


def test_every_status_and_every_event_type_appears(tmp_path: Path) -> None:
    seen_types: set[str] = set()
    seen_status: set[SagaStatus] = set()
    clock = VirtualClock()
    fail_comp = {"on": True}
    saga = Saga("everything")

    @saga.step(retry=Retry.fixed(1.0, attempts=3))
    def one(ctx: StepContext) -> str:
        if ctx.input == "flaky" and ctx.attempt == 1:
            raise ConnectionError("flaky")
        return "one"

    @one.compensate(retry=Retry.fixed(1.0, attempts=2))
    def undo_one(ctx: StepContext) -> None:
        if ctx.input == "comp-fails" and fail_comp["on"]:
            raise RuntimeError("undo failed")

    @saga.step(retry=Retry.fixed(100.0, attempts=3))
    def two(ctx: StepContext) -> str:
        if ctx.input in ("comp-fails", "fails"):
            raise PermanentError("no")
        if ctx.input == "cancel":
            raise ConnectionError("wait for me")
        return "two"

    stuck = Saga("stuck")  # its policy's wait (built past the constructors' checks) overflows

    @stuck.step(name="one", retry=Retry(wait=tenacity.wait_fixed(1e12), attempts=2))
    def stuck_one(ctx: StepContext) -> str:
        raise ConnectionError("down")

    with open_store(f"sqlite:///{tmp_path / 'all.db'}") as store:
        coordinator = Coordinator(store, [saga, stuck], clock=clock, poll_interval=60.0)
        ids = {i: coordinator.start("everything", i, saga_id=i)
               for i in ("flaky", "fails", "comp-fails", "cancel")}
        ids["parked"] = coordinator.start("stuck", None, saga_id="parked")
        ids["skipped"] = coordinator.start("everything", "cancel", saga_id="skipped")
        seen_status.add(coordinator.get("cancel").status)
        coordinator.work(until_idle=True)
        skip(store, clock, "skipped", "two", result="by hand", sagas=[saga], by="dana")
        # flaky and cancel wait on a forward retry; comp-fails on a compensation retry.
        assert coordinator.get("comp-fails").status is SagaStatus.COMPENSATING
        seen_status.update(coordinator.get(i).status for i in ids)
        coordinator.cancel("cancel", reason="customer asked")
        assert coordinator.get("parked").parked is not None
        coordinator.cancel("parked", reason="cannot be driven")
        clock.advance(1)
        coordinator.work(until_idle=True)
        assert coordinator.get("comp-fails").status is SagaStatus.FAILED
        seen_status.update(coordinator.get(i).status for i in ids)
        fail_comp["on"] = False
        coordinator.retry("comp-fails")
        coordinator.work(until_idle=True)
        ids["forked"] = fork(store, clock, "fails", from_step="two", input="flaky", sagas=[saga],
                             by="dana", new_id="forked")
        coordinator.work(until_idle=True)
        for i in ids:
            seen_status.add(coordinator.get(i).status)
            seen_types.update(types(store, i))
            check_log_invariants(logged(store.load(i)), ["one", "two"])
        assert coordinator.get("flaky").status is SagaStatus.COMPLETED
        assert coordinator.get("fails").status is SagaStatus.COMPENSATED
        assert coordinator.get("comp-fails").status is SagaStatus.COMPENSATED
        assert coordinator.get("cancel").status is SagaStatus.COMPENSATED
        assert coordinator.get("parked").status is SagaStatus.COMPENSATED
    assert seen_status == set(SagaStatus)
    assert seen_types == set(ev.EVENT_TYPES)
    assert len(seen_types) == 19

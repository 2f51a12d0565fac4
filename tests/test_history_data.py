"""The timeline as data, checked against real runs and against figures taken from the events directly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest

from saga import Coordinator, EventStore, PermanentError, Retry, Saga, StepContext, StoredEvent, VirtualClock
from saga.inspection.history import timeline
from tests.helpers import WorkerDied, open_store

_OUTCOMES = {"StepSucceeded": "succeeded", "StepCompensated": "succeeded"}


def events_of(store: EventStore, saga_id: str) -> list[StoredEvent]:
    """A saga's stored events, oldest first."""
    return store.load(saga_id)


def _trip(die: set[str] | None = None) -> Saga:
    saga = Saga("trip")

    @saga.step(retry=Retry.fixed(1.0, attempts=3))
    def book(ctx: StepContext) -> str:
        if die is not None and ctx.saga_id in die:
            die.discard(ctx.saga_id)
            raise WorkerDied
        return "booked"

    @book.compensate(retry=Retry.fixed(5.0, attempts=3))
    def unbook(ctx: StepContext) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("hotel API down")

    @saga.step(retry=Retry.fixed(2.0, attempts=4), timeout=0.1)
    async def charge(ctx: StepContext) -> str:
        if ctx.attempt == 1:
            raise ConnectionError("bank busy")
        if ctx.attempt == 2:
            await asyncio.sleep(5)
        return "charged"

    @charge.compensate
    def refund(ctx: StepContext) -> None:
        return None

    @saga.step(retry=Retry.fixed(600.0, attempts=2))
    def ship(ctx: StepContext) -> str:
        if ctx.input == "no stock":
            raise PermanentError("nothing left to ship")
        if ctx.input == "slow warehouse":
            raise TimeoutError("warehouse slow")
        return "shipped"

    return saga


def expected_from_events(history: Sequence[StoredEvent]) -> list[dict[str, Any]]:
    """Each attempt as read straight off the events: a start, then the outcome with its step and number."""
    out: list[dict[str, Any]] = []
    for i, start in enumerate(history):
        if start.type not in ("StepAttemptStarted", "CompensationAttemptStarted"):
            continue
        comp = start.type.startswith("Compensation")
        item: dict[str, Any] = {
            "step": start.data["step"], "attempt": start.data["attempt"], "compensation": comp,
            "started_at": start.data["at"], "ended_at": None, "outcome": "running", "error_type": None,
            "message": None, "next_attempt_at": None, "calls": [], "result": None, "seq": start.seq,
        }
        for later in history[i + 1:]:
            same = later.data.get("step") == item["step"] and later.data.get("attempt") == item["attempt"]
            kinds = (("StepAttemptFailed", "StepSucceeded") if not comp
                     else ("CompensationAttemptFailed", "StepCompensated"))
            if same and later.type in kinds:
                item["ended_at"] = later.data["at"]
                if later.type in _OUTCOMES:
                    item["outcome"] = "succeeded"
                    item["result"] = later.data.get("result")
                else:
                    d = later.data
                    item["outcome"] = "timed_out" if d["timed_out"] else "lost" if d["lost"] else "failed"
                    item["error_type"], item["message"] = d["error_type"], d["message"]
                    item["next_attempt_at"] = d["next_attempt_at"]
                break
        out.append(item)
    return out


def normalised(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ISO strings compared as instants (the log writes ``Z``, isoformat writes ``+00:00``)."""
    def fix(v: Any) -> Any:
        return v.replace("Z", "+00:00") if isinstance(v, str) and v.endswith("Z") else v
    return [{k: fix(v) for k, v in item.items()} for item in items]


def test_a_compensated_saga_names_every_attempt_outcome_and_delay(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    coordinator = Coordinator(sqlite_store, [_trip()], clock=clock, poll_interval=60.0)
    saga_id = coordinator.start("trip", "no stock", saga_id="t-1")
    coordinator.run(saga_id)
    history = events_of(sqlite_store, saga_id)
    t = timeline(saga_id, iter(history))  # read once, as a stream
    data = t.to_json()

    assert (data["id"], data["name"], data["version"], data["status"]) == ("t-1", "trip", 1, "compensated")
    assert data["reason"] == coordinator.get(saga_id).reason and data["reason"]
    assert [(a["step"], a["attempt"], a["compensation"], a["outcome"], a["error_type"])
            for a in data["attempts"]] == [
        ("book", 1, False, "succeeded", None),
        ("charge", 1, False, "failed", "ConnectionError"),
        ("charge", 2, False, "timed_out", "AttemptTimedOut"),
        ("charge", 3, False, "succeeded", None),
        ("ship", 1, False, "failed", "PermanentError"),
        ("charge", 1, True, "succeeded", None),
        ("book", 1, True, "failed", "RuntimeError"),
        ("book", 2, True, "succeeded", None),
    ]
    # delays are the retry policies': 2 s for charge, 5 s for unbook; none after a permanent error
    delays = {(a.step, a.attempt, a.compensation): a.next_attempt_at - a.ended_at
              for a in t.attempts if a.next_attempt_at is not None and a.ended_at is not None}
    assert delays == {("charge", 1, False): timedelta(seconds=2), ("charge", 2, False): timedelta(seconds=2),
                      ("book", 1, True): timedelta(seconds=5)}
    assert data["attempts"][1]["message"] == "bank busy"
    assert all(a["calls"] == [] for a in data["attempts"])
    assert data["operator_actions"] == []
    assert normalised(data["attempts"]) == normalised(expected_from_events(history))


def test_an_operator_cancel_is_listed_with_when_and_why(
    sqlite_store: EventStore, clock: VirtualClock
) -> None:
    coordinator = Coordinator(sqlite_store, [_trip()], clock=clock, poll_interval=60.0)
    saga_id = coordinator.start("trip", "slow warehouse", saga_id="t-2")
    coordinator.work(until_idle=True)  # ship failed once and waits ten minutes
    clock.advance(3.0)
    coordinator.work(until_idle=True)
    clock.advance(3.0)
    coordinator.work(until_idle=True)
    waiting = timeline(saga_id, events_of(sqlite_store, saga_id))
    last = waiting.attempts[-1]
    assert (last.step, last.outcome, last.error_type) == ("ship", "failed", "TimeoutError")
    assert last.next_attempt_at is not None and last.ended_at is not None
    assert last.next_attempt_at - last.ended_at == timedelta(seconds=600)
    assert waiting.status == "running"

    cancelled_at = clock.now()
    coordinator.cancel(saga_id, reason="customer changed plans", by="dana")
    coordinator.run(saga_id)
    history = events_of(sqlite_store, saga_id)
    data = timeline(saga_id, history).to_json()
    assert data["status"] == "compensated"
    assert data["operator_actions"] == [
        {"type": "cancel", "at": cancelled_at.isoformat(), "by": "dana", "reason": "customer changed plans"}
    ]
    cancels = [e for e in history if e.type == "SagaCancelRequested"]
    assert len(cancels) == 1 and cancels[0].data["reason"] == "customer changed plans"
    assert normalised(data["attempts"]) == normalised(expected_from_events(history))


def test_an_attempt_in_flight_is_running_then_lost_when_its_worker_is_gone(
    sqlite_url: str, clock: VirtualClock
) -> None:
    die = {"t-3"}
    with open_store(sqlite_url) as store:
        first = Coordinator(store, [_trip(die)], clock=clock, lease=10.0, poll_interval=60.0)
        saga_id = first.start("trip", None, saga_id="t-3")
        with pytest.raises(WorkerDied):
            first.work(until_idle=True)
        running = timeline(saga_id, events_of(store, saga_id))
        assert [(a.step, a.attempt, a.outcome, a.ended_at) for a in running.attempts] == [
            ("book", 1, "running", None)]
        assert running.attempts[0].started_at == events_of(store, saga_id)[1].event.at
    clock.advance(11.0)
    with open_store(sqlite_url) as store:
        second = Coordinator(store, [_trip()], clock=clock, lease=10.0, poll_interval=60.0)
        second.run(saga_id)
        history = events_of(store, saga_id)
        after = timeline(saga_id, history)
        assert after.status == "completed" and after.reason is None
        lost = after.attempts[0]
        assert (lost.step, lost.attempt, lost.outcome, lost.error_type) == ("book", 1, "lost", "AttemptLost")
        assert after.attempts[1].step == "book" and after.attempts[1].outcome == "succeeded"
        assert normalised([a.to_json() for a in after.attempts]) == normalised(expected_from_events(history))


def test_the_timeline_reads_its_events_once_in_order(sqlite_store: EventStore, clock: VirtualClock) -> None:
    coordinator = Coordinator(sqlite_store, [_trip()], clock=clock, poll_interval=60.0)
    saga_id = coordinator.start("trip", None, saga_id="t-4")
    coordinator.run(saga_id)
    history = events_of(sqlite_store, saga_id)
    pulled: list[int] = []

    def stream() -> Iterator[StoredEvent]:
        for e in history:
            pulled.append(e.seq)
            yield e

    t = timeline(saga_id, stream())
    assert pulled == [e.seq for e in history]
    assert t.status == "completed" and len(t.attempts) == 5  # book, charge x3, ship
    assert [a.outcome for a in t.attempts] == ["succeeded", "failed", "timed_out", "succeeded", "succeeded"]

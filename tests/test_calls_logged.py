"""What adapters did, in the log: calls in outcome events, Retry-After, ``Saga.call``, ``saga show``.

Everything runs through the real coordinator against real HTTP services on loopback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from saga import Coordinator, EventStore, Retry, Saga, StepContext, VirtualClock
from saga import events as ev
from saga.adapters import CircuitBreaker, Failover, Hedge, Http
from saga.errors import DefinitionError
from saga.inspection.timeline import show

from .cli_run import ok
from .loopback import Reply, Service, services


@pytest.fixture
def trio() -> Iterator[list[Service]]:
    with services("primary", "standby", "spare") as started:
        yield started


def outcomes(store: EventStore, saga_id: str) -> list[ev.Event]:
    kinds = (ev.StepSucceeded, ev.StepAttemptFailed, ev.StepCompensated, ev.CompensationAttemptFailed)
    return [s.event for s in store.load(saga_id) if isinstance(s.event, kinds)]


def brief(e: ev.Event) -> list[tuple[str, str, str, int | None]]:
    """(adapter, last path segment, outcome, status) of each call an outcome event records."""
    calls = getattr(e, "calls", ())
    return [(c.adapter, c.target.rsplit("/", 1)[-1], c.outcome, c.error.status if c.error else None)
            for c in calls]


def test_a_failover_leaves_both_calls_in_the_log(trio: list[Service], sqlite_url: str) -> None:
    primary, standby, _ = trio
    primary.default = Reply(503)
    hotel = Failover([Http("POST", primary.url + "/primary"), Http("POST", standby.url + "/standby")])
    saga = Saga("stay")
    saga.call("book", hotel, request={"json": {"nights": 1}}, retry=Retry.none())

    with EventStore(sqlite_url) as store, Coordinator(store, [saga], clock=VirtualClock()) as c:
        view = c.execute("stay", saga_id="stay-1")
        assert view.results["book"] == {"ok": True}
        [done] = outcomes(store, "stay-1")
        stored = next(s for s in store.load("stay-1") if s.type == "StepSucceeded")
        lines = list(show(store, "stay-1"))
    assert isinstance(done, ev.StepSucceeded)
    assert brief(done) == [("http", "primary", "error", 503), ("http", "standby", "ok", None)]
    assert stored.schema_version == 2
    first, second = done.calls
    assert first.started_at <= second.started_at and first.error is not None
    assert first.error.type == "HttpError"
    # The timeline shows both calls under the attempt.
    text = "\n".join(lines)
    assert f"http {primary.url}/primary: error 503" in text
    assert f"http {standby.url}/standby: ok" in text
    assert text.index("succeeded on attempt 1") < text.index("/primary: error 503")

    # saga history --json shows them in data.calls, in start order.
    rows = [json.loads(line) for line in ok("--db", sqlite_url, "history", "stay-1", "--json").splitlines()]
    [row] = [r for r in rows if r["type"] == "StepSucceeded"]
    assert [(c["target"].rsplit("/", 1)[-1], c["outcome"], c["error"] and c["error"]["status"])
            for c in row["data"]["calls"]] == [("primary", "error", 503), ("standby", "ok", None)]
    assert set(row["data"]["calls"][0]) == {"adapter", "target", "outcome", "error", "started_at",
                                            "duration"}


def test_a_failed_attempt_records_its_calls(trio: list[Service], sqlite_url: str) -> None:
    primary, standby, _ = trio
    primary.default = standby.default = Reply(503)
    hotel = Failover([Http("POST", primary.url + "/primary"), Http("POST", standby.url + "/standby")])
    saga = Saga("stay")
    saga.call("book", hotel, retry=Retry.fixed(1.0, attempts=2))

    with EventStore(sqlite_url) as store, Coordinator(store, [saga], clock=VirtualClock()) as c:
        view = c.execute("stay", saga_id="stay-2")
        failures = outcomes(store, "stay-2")
    assert view.status == "compensated"
    assert [type(e).__name__ for e in failures] == ["StepAttemptFailed", "StepAttemptFailed"]
    for e in failures:
        assert brief(e) == [("http", "primary", "error", 503), ("http", "standby", "error", 503)]


def test_a_hedge_leaves_the_cancelled_leg_and_the_winner(trio: list[Service], sqlite_url: str) -> None:
    slow, quick, _ = trio
    slow.default = Reply(200, {"from": "slow"}, delay=2.0)
    quick.default = Reply(200, {"from": "quick"})
    stock = Hedge([Http("GET", slow.url + "/slow"), Http("GET", quick.url + "/quick")], after=0.05)
    saga = Saga("order")
    saga.call("stock", stock, retry=Retry.none())

    with EventStore(sqlite_url) as store, Coordinator(store, [saga], clock=VirtualClock()) as c:
        view = c.execute("order", saga_id="order-1")
        [done] = outcomes(store, "order-1")
        text = "\n".join(show(store, "order-1"))
    assert view.results["stock"] == {"from": "quick"}
    assert brief(done) == [("http", "slow", "cancelled", None), ("http", "quick", "ok", None)]
    assert slow.left.wait(5)  # the losing request was closed
    assert "/slow: cancelled" in text and "/quick: ok" in text


def test_an_open_breaker_leaves_rejected_calls_and_sets_the_next_attempt(
    sqlite_url: str,
) -> None:
    payments = Service("payments")
    try:
        payments.then(Reply(503))  # then the default: 200
        breaker = CircuitBreaker(Http("POST", payments.url + "/charge"), failures=1, reset_after=30.0)
        saga = Saga("pay")
        saga.call("charge", breaker, retry=Retry.fixed(1.0, attempts=5))
        clock = VirtualClock()
        with EventStore(sqlite_url) as store, Coordinator(store, [saga], clock=clock) as c:
            view = c.execute("pay", saga_id="pay-1")
            events = outcomes(store, "pay-1")
            text = "\n".join(show(store, "pay-1"))
    finally:
        payments.close()
    assert view.status == "completed" and payments.hits == 2
    first, rejected, trial = events
    assert isinstance(first, ev.StepAttemptFailed) and isinstance(rejected, ev.StepAttemptFailed)
    assert brief(first) == [("http", "charge", "error", 503)]
    assert brief(rejected) == [("http", "charge", "rejected", None)]
    assert rejected.calls[0].error is not None and rejected.calls[0].error.type == "CircuitOpen"
    # The breaker opened at the first failure and lets a trial through 30 s later: the
    # retry after the rejection waits for that, not the policy's one second.
    assert rejected.next_attempt_at == first.at + timedelta(seconds=30)
    assert brief(trial) == [("http", "charge", "ok", None)]
    assert "rejected CircuitOpen" in text


def retry_after_saga(url: str, retry: Retry, deadline: float | None = None) -> Saga:
    saga = Saga("book", deadline=deadline)
    saga.call("book", Http("POST", url), retry=retry)
    return saga


@pytest.mark.parametrize("form", ["seconds", "date"])
def test_retry_after_moves_the_next_attempt(form: str, sqlite_url: str) -> None:
    clock = VirtualClock(datetime(2030, 1, 1, tzinfo=UTC))
    later = clock.now() + timedelta(seconds=120)
    header = "120" if form == "seconds" else format_datetime(later, usegmt=True)
    hotel = Service("hotel")
    try:
        hotel.then(Reply(503, headers={"Retry-After": header}))
        saga = retry_after_saga(hotel.url + "/book", Retry.fixed(1.0, attempts=3))
        with EventStore(sqlite_url) as store, Coordinator(store, [saga], clock=clock) as c:
            saga_id = c.start("book")
            c.work(until_idle=True)
            [failed] = outcomes(store, saga_id)
            assert isinstance(failed, ev.StepAttemptFailed)
            assert failed.retried and failed.next_attempt_at is not None
            # The HTTP date has whole seconds; the policy alone would have said one second.
            assert abs((failed.next_attempt_at - later).total_seconds()) < 1.0
            assert failed.next_attempt_at >= failed.at + timedelta(seconds=119)
            clock.advance(60)
            c.work(until_idle=True)
            assert hotel.hits == 1  # not before the service's time
            clock.advance(61)
            c.work(until_idle=True)
            assert c.get(saga_id).status == "completed" and hotel.hits == 2
    finally:
        hotel.close()


def test_retry_after_past_max_elapsed_gives_up_and_says_why(sqlite_url: str) -> None:
    hotel = Service("hotel", default=Reply(503, headers={"Retry-After": "3600"}))
    try:
        saga = retry_after_saga(hotel.url + "/book", Retry.fixed(1.0, attempts=5, max_elapsed=60))
        with EventStore(sqlite_url) as store, Coordinator(store, [saga], clock=VirtualClock()) as c:
            view = c.execute("book", saga_id="b-1")
            [failed] = outcomes(store, "b-1")
    finally:
        hotel.close()
    assert view.status == "compensated" and hotel.hits == 1
    assert isinstance(failed, ev.StepAttemptFailed) and not failed.retried
    assert failed.gave_up is not None
    assert "Retry-After" in failed.gave_up and "max_elapsed (60s)" in failed.gave_up


def test_retry_after_past_the_deadline_gives_up_and_says_why(sqlite_url: str) -> None:
    hotel = Service("hotel", default=Reply(503, headers={"Retry-After": "3600"}))
    try:
        saga = retry_after_saga(hotel.url + "/book", Retry.fixed(1.0, attempts=5), deadline=600)
        with EventStore(sqlite_url) as store, Coordinator(store, [saga], clock=VirtualClock()) as c:
            view = c.execute("book", saga_id="b-2")
            [failed] = outcomes(store, "b-2")
    finally:
        hotel.close()
    assert view.status == "compensated" and hotel.hits == 1
    assert isinstance(failed, ev.StepAttemptFailed)
    assert failed.gave_up == "the next attempt would start after the saga deadline " \
        "(the service's Retry-After)"


def test_saga_call_books_and_compensates(trio: list[Service], sqlite_url: str) -> None:
    hotel, car, _ = trio
    hotel.default = Reply(201, {"id": "h-7"})
    car.default = Reply(409, {"error": "no cars"})
    trip = Saga("trip")
    trip.call(
        "book_hotel", Http("POST", hotel.url + "/bookings"),
        request=lambda ctx: {"json": ctx.input},
        compensate=Http("DELETE", hotel.url + "/bookings/{id}"),
        compensate_request=lambda ctx: {"path": {"id": ctx.result["id"]}},
        retry=Retry.none(),
    )
    trip.call("book_car", Http("POST", car.url + "/cars"), retry=Retry.none())
    assert trip["book_hotel"].adapter is not None and trip["book_hotel"].compensation is not None
    assert isinstance(trip["book_hotel"].compensation.adapter, Http)

    with EventStore(sqlite_url) as store, Coordinator(store, [trip], clock=VirtualClock()) as c:
        view = c.execute("trip", {"nights": 2}, saga_id="t-1")
        events = outcomes(store, "t-1")
    assert view.status == "compensated"
    assert [(r.method, r.path) for r in hotel.requests] == [("POST", "/bookings"),
                                                            ("DELETE", "/bookings/h-7")]
    assert hotel.requests[0].json() == {"nights": 2}
    assert hotel.requests[1].headers["Idempotency-Key"] == "t-1/book_hotel/compensate"
    assert [(type(e).__name__, brief(e)) for e in events] == [
        ("StepSucceeded", [("http", "bookings", "ok", None)]),
        ("StepAttemptFailed", [("http", "cars", "error", 409)]),
        ("StepCompensated", [("http", "h-7", "ok", None)]),
    ]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"adapter": print}, "must be callable as adapter(ctx, **request)"),
    ({"request": 3}, "request must be a mapping of keywords or a function"),
    ({"compensate_request": {}}, "compensate_request without compensate"),
    ({"name": "bad name"}, "invalid step name"),
])
def test_saga_call_refuses_bad_definitions(kwargs: dict[str, Any], message: str) -> None:
    saga = Saga("s")
    args: dict[str, Any] = {"name": "a", "adapter": Http("GET", "http://127.0.0.1:9/x")} | kwargs
    with pytest.raises(DefinitionError, match=re.escape(message)):
        saga.call(args.pop("name"), args.pop("adapter"), **args)
    assert saga.steps == []


def test_a_request_function_that_returns_no_mapping_fails_the_attempt(sqlite_url: str) -> None:
    saga = Saga("s")
    def not_a_mapping(ctx: StepContext) -> Any:
        return "oops"

    saga.call("a", Http("GET", "http://127.0.0.1:9/x"), request=not_a_mapping, retry=Retry.none())
    with EventStore(sqlite_url) as store, Coordinator(store, [saga], clock=VirtualClock()) as c:
        view = c.execute("s")
    error = view.steps["a"].error
    assert error is not None and "not a mapping of keywords" in error.message


def test_a_log_written_before_calls_were_recorded_still_reads(tmp_path: Path) -> None:
    """Outcome events of schema version 1 have no ``calls``: they read with none."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    saga = Saga("old")

    @saga.step(retry=Retry.none())
    def a(ctx: StepContext) -> int:
        return 1

    with EventStore(url) as store, Coordinator(store, [saga], clock=VirtualClock()) as c:
        c.execute("old", saga_id="o-1")
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # rewrite the outcome as the previous version wrote it
        row = conn.execute(sa.text(
            "SELECT seq, data FROM saga_events WHERE saga_id = 'o-1' AND type = 'StepSucceeded'"
        )).one()
        data = json.loads(row.data)
        del data["calls"]
        for (trigger,) in conn.execute(sa.text(  # an append-only log refuses updates
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'saga_events'"
        )).all():
            conn.execute(sa.text(f'DROP TRIGGER "{trigger}"'))
        conn.execute(sa.text(
            "UPDATE saga_events SET schema_version = 1, data = :d WHERE saga_id = 'o-1' AND seq = :s"
        ), {"d": json.dumps(data), "s": row.seq})
    engine.dispose()
    with EventStore(url) as store:
        [old] = [s for s in store.load("o-1") if s.type == "StepSucceeded"]
        assert old.schema_version == 1
        assert isinstance(old.event, ev.StepSucceeded) and old.event.calls == ()
        assert old.event.result == 1
        assert "succeeded on attempt 1: 1" in "\n".join(show(store, "o-1"))

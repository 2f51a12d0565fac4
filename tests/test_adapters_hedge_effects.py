"""What a hedge's losing legs really did: a plain function cannot be stopped, so a leg that
answered after the winner is logged as it ended and, with ``compensate``, undone by the hedge."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from saga import Coordinator, EventStore, PermanentError, Retry, Saga, StepContext, VirtualClock
from saga import events as ev
from saga.adapters import (
    AdapterError,
    CompensationFailed,
    Function,
    Hedge,
    Http,
    InvalidAdapter,
    SqlParticipant,
)

from .loopback import Reply, Service, services


def context() -> StepContext:
    return StepContext(
        saga_id="o-1", saga_name="order", step="book", attempt=1, idempotency_key="o-1/book/do",
        input=None, results={}, clock=VirtualClock(),
    )


HOW = pytest.mark.parametrize("how", ["sync", "async"])


def call(adapter: Any, ctx: StepContext, how: str, **request: Any) -> Any:
    if how == "sync":
        return adapter(ctx, **request)
    return asyncio.run(adapter.acall(ctx, **request))


def summary(ctx: StepContext) -> list[tuple[str, str]]:
    return [(c.target, c.outcome) for c in ctx.calls.calls()]


class Ledger:
    """Bookings made and undone by plain functions, as a service would keep them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.booked: list[str] = []
        self.undone: list[tuple[str, str | None, str]] = []  # (which, ref, idempotency key)

    def book(self, name: str, *, after: float = 0.0, fail: BaseException | None = None) -> Function:
        def book(**_: Any) -> dict[str, str]:
            time.sleep(after)
            if fail is not None:
                raise fail
            with self.lock:
                self.booked.append(name)
            return {"ref": f"{name}-1"}

        return Function(book, target=name)

    def cancel(self, name: str) -> Function:
        def cancel(ref: str | None, key: str) -> None:
            with self.lock:
                self.undone.append((name, ref, key))

        return Function(cancel, target=f"cancel {name}")


def undo_request(ctx: StepContext) -> dict[str, Any]:
    return {"ref": ctx.result["ref"] if ctx.result else None, "key": ctx.idempotency_key}


@HOW
def test_a_losing_leg_that_answered_is_logged_as_it_ended(how: str) -> None:
    ledger = Ledger()
    hedge = Hedge([ledger.book("slow", after=0.5), ledger.book("fast")], after=0.05)
    ctx = context()
    assert call(hedge, ctx, how) == {"ref": "fast-1"}
    assert sorted(ledger.booked) == ["fast", "slow"], "both effects happened"
    assert summary(ctx) == [("slow", "ok"), ("fast", "ok")], "the loser is not 'cancelled': it ran"


@HOW
def test_with_compensate_the_hedge_undoes_a_losing_leg_that_answered(how: str) -> None:
    ledger = Ledger()
    hedge = Hedge(
        [ledger.book("slow", after=0.5), ledger.book("fast")], after=0.05,
        compensate=[ledger.cancel("slow"), ledger.cancel("fast")], compensate_request=undo_request,
    )
    ctx = context()
    assert call(hedge, ctx, how) == {"ref": "fast-1"}
    assert ledger.undone == [("slow", "slow-1", "o-1/book/do/replica-1/compensate")]
    assert summary(ctx) == [("slow", "ok"), ("fast", "ok"), ("cancel slow", "ok")]


@HOW
def test_a_leg_that_failed_is_not_compensated_and_a_quick_winner_leaves_none_to_undo(how: str) -> None:
    ledger = Ledger()
    hedge = Hedge(
        [ledger.book("broken", after=0.2, fail=ConnectionError("down")), ledger.book("fast")], after=0.05,
        compensate=[ledger.cancel("broken"), ledger.cancel("fast")], compensate_request=undo_request,
    )
    ctx = context()
    assert call(hedge, ctx, how) == {"ref": "fast-1"}
    assert ledger.undone == []
    assert summary(ctx) == [("broken", "error"), ("fast", "ok")]

    alone = context()
    assert call(Hedge([ledger.book("quick"), ledger.book("never")], after=1.0,
                      compensate=[ledger.cancel("quick"), ledger.cancel("never")],
                      compensate_request=undo_request), alone, how) == {"ref": "quick-1"}
    assert ledger.undone == [] and summary(alone) == [("quick", "ok")]


@HOW
def test_a_permanent_error_still_undoes_a_leg_that_answered_after_it(how: str) -> None:
    ledger = Ledger()
    hedge = Hedge(
        [ledger.book("refuses", after=0.1, fail=PermanentError("no such room")),
         ledger.book("slow", after=0.5)],
        after=0.02, compensate=[ledger.cancel("refuses"), ledger.cancel("slow")],
        compensate_request=undo_request,
    )
    ctx = context()
    with pytest.raises(PermanentError, match="no such room"):
        call(hedge, ctx, how)
    assert ledger.booked == ["slow"]
    assert ledger.undone == [("slow", "slow-1", "o-1/book/do/replica-2/compensate")]
    assert summary(ctx) == [("refuses", "error"), ("slow", "ok"), ("cancel slow", "ok")]


@HOW
def test_a_losing_sql_participant_waits_for_its_transaction_and_is_undone_after_it(
    tmp_path: Path, how: str
) -> None:
    def book(connection: sa.Connection) -> dict[str, int]:
        if "slow" in str(connection.engine.url):
            time.sleep(0.5)
        connection.execute(sa.text("CREATE TABLE IF NOT EXISTS rooms (n INT)"))
        connection.execute(sa.text("INSERT INTO rooms VALUES (1)"))
        return {"room": 1}

    def unbook(connection: sa.Connection) -> None:
        connection.execute(sa.text("DELETE FROM rooms"))

    urls = [f"sqlite:///{tmp_path / name}.db" for name in ("slow", "fast")]
    slow, fast = (SqlParticipant(url) for url in urls)
    hedge = Hedge([slow, fast], after=0.05, compensate=[slow, fast], compensate_request={"work": unbook})
    ctx = context()
    assert call(hedge, ctx, how, work=book) == {"room": 1}
    assert [c.outcome for c in ctx.calls.calls()] == ["ok", "ok", "ok"], "the slow one committed"
    rooms = []
    for url in urls:
        with sa.create_engine(url).connect() as c:
            rooms.append(c.execute(sa.text("SELECT count(*) FROM rooms")).scalar_one())
    assert rooms == [0, 1], "the loser's booking was undone after it committed, the winner's stands"


@pytest.fixture
def pair() -> Iterator[list[Service]]:
    with services("primary", "standby") as started:
        yield started


@HOW
def test_an_http_leg_cancelled_in_flight_is_in_doubt_and_compensated_without_an_answer(
    pair: list[Service], how: str
) -> None:
    primary, standby = pair
    primary.then(Reply(201, {"ref": "P"}, delay=5.0))
    standby.then(Reply(201, {"ref": "S"}))
    hedge = Hedge(
        [Http("POST", primary.url + "/bookings"), Http("POST", standby.url + "/bookings")], after=0.05,
        compensate=[Http("DELETE", primary.url + "/bookings"), Http("DELETE", standby.url + "/bookings")],
    )
    ctx = context()
    assert call(hedge, ctx, how) == {"ref": "S"}
    assert primary.left.wait(2.0), "the primary's server saw its client go"
    assert [(r.method, r.headers["Idempotency-Key"]) for r in primary.requests] == [
        ("POST", "o-1/book/do"), ("DELETE", "o-1/book/do/replica-1/compensate"),
    ]
    assert [r.method for r in standby.requests] == ["POST"]
    assert [(c.target.rsplit(":", 1)[1].split("/", 1)[1], c.outcome) for c in ctx.calls.calls()] == [
        ("bookings", "cancelled"), ("bookings", "ok"), ("bookings", "ok"),
    ]


@HOW
def test_a_compensation_that_fails_fails_the_call_retryably_and_in_doubt(how: str) -> None:
    ledger = Ledger()

    def refuse(**_: Any) -> None:
        raise ConnectionError("cannot cancel now")

    hedge = Hedge(
        [ledger.book("slow", after=0.5), ledger.book("fast")], after=0.05,
        compensate=[Function(refuse, target="cancel slow"), ledger.cancel("fast")],
    )
    ctx = context()
    with pytest.raises(CompensationFailed, match="cannot cancel now") as caught:
        call(hedge, ctx, how)
    e = caught.value
    assert isinstance(e, AdapterError) and not isinstance(e, PermanentError)
    assert e.in_doubt and "slow" in str(e)
    assert summary(ctx) == [("slow", "ok"), ("fast", "ok"), ("cancel slow", "error")]


def test_through_the_coordinator_every_booking_a_hedge_made_is_undone(sqlite_url: str) -> None:
    ledger = Ledger()
    trip = Saga("trip")
    trip.call(
        "book",
        Hedge([ledger.book("slow", after=0.5), ledger.book("fast")], after=0.05,
              compensate=[ledger.cancel("slow"), ledger.cancel("fast")], compensate_request=undo_request),
        compensate=Function(lambda ref, key: ledger.undone.append(("winner", ref, key)), target="cancel"),
        compensate_request=undo_request,
        retry=Retry.none(),
    )

    @trip.step(retry=Retry.none())
    def pay(ctx: StepContext) -> None:
        raise PermanentError("card declined")

    with EventStore(sqlite_url) as store, Coordinator(store, [trip], clock=VirtualClock()) as c:
        view = c.execute("trip", saga_id="trip-1")
        [done] = [s.event for s in store.load("trip-1") if isinstance(s.event, ev.StepSucceeded)]
    assert view.status.value == "compensated"
    assert sorted(ledger.booked) == ["fast", "slow"]
    assert sorted(ledger.undone) == [
        ("slow", "slow-1", "trip-1/book/do/replica-1/compensate"),
        ("winner", "fast-1", "trip-1/book/compensate"),
    ], "what ran was undone: the loser by the hedge, the winner by the step's compensation"
    assert [(c.target, c.outcome) for c in done.calls] == [
        ("slow", "ok"), ("fast", "ok"), ("cancel slow", "ok"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compensate": [Function(print)]}, "one compensation per replica"),
        ({"compensate": [Function(print), print]}, "must be adapters"),
        ({"compensate": Function(print)}, "list of adapters"),
        ({"compensate_request": {"a": 1}}, "compensate_request without compensate"),
        ({"compensate": [Function(print)] * 2, "compensate_request": 3}, "compensate_request must be"),
    ],
)
def test_bad_compensations_are_refused_when_built(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidAdapter, match=message):
        Hedge([Function(print), Function(print)], **kwargs)

"""Failover and Hedge against real services on loopback: order, call logs, closed losers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from saga import Coordinator, EventStore, PermanentError, Retry, Saga, StepContext, VirtualClock
from saga.adapters import (
    AllReplicasFailed,
    CircuitBreaker,
    Failover,
    Faulty,
    Function,
    Hedge,
    Http,
    HttpError,
    HttpRejected,
    InvalidAdapter,
)

from .loopback import Reply, Service, services


def context(attempt: int = 1) -> StepContext:
    return StepContext(
        saga_id="o-1", saga_name="order", step="stock", attempt=attempt,
        idempotency_key="o-1/stock/do", input=None, results={}, clock=VirtualClock(),
    )


@pytest.fixture
def trio() -> Iterator[list[Service]]:
    with services("primary", "standby", "spare") as started:
        yield started


HOW = pytest.mark.parametrize("how", ["sync", "async"])


def call(adapter: Any, ctx: StepContext, how: str, **request: Any) -> Any:
    if how == "sync":
        return adapter(ctx, **request)
    return asyncio.run(adapter.acall(ctx, **request))


def summary(ctx: StepContext) -> list[tuple[str, str, int | None]]:
    """(target path, outcome, status) per recorded call, in the order they started."""
    return [
        (c.target.rsplit("/", 1)[-1], c.outcome, c.error.status if c.error else None)
        for c in ctx.calls.calls()
    ]


# -- failover -------------------------------------------------------------------------------


@HOW
def test_failover_tries_replicas_in_order_and_logs_each(trio: list[Service], how: str) -> None:
    primary, standby, spare = trio
    primary.then(Reply(503), Reply(503))
    standby.then(Reply(500), Reply(200, {"from": "standby"}))
    spare.then(Reply(200, {"from": "spare"}))
    failover = Failover([Http("GET", s.url + f"/{s.name}") for s in trio])

    ctx = context()
    assert call(failover, ctx, how) == {"from": "spare"}
    assert summary(ctx) == [("primary", "error", 503), ("standby", "error", 500), ("spare", "ok", None)]

    # The next attempt starts from the first replica again.
    again = context(attempt=2)
    assert call(failover, again, how) == {"from": "standby"}
    assert summary(again) == [("primary", "error", 503), ("standby", "ok", None)]
    assert (primary.hits, standby.hits, spare.hits) == (2, 2, 1)


@HOW
def test_a_permanent_error_ends_the_failover_at_once(trio: list[Service], how: str) -> None:
    primary, standby, _ = trio
    primary.then(Reply(422, {"error": "no such room"}))
    ctx = context()
    with pytest.raises(HttpRejected):
        call(Failover([Http("POST", primary.url), Http("POST", standby.url)]), ctx, how)
    assert standby.hits == 0
    assert [c.outcome for c in ctx.calls.calls()] == ["error"]


@HOW
def test_failover_fails_retryably_when_every_replica_fails(trio: list[Service], how: str) -> None:
    primary, standby, _ = trio
    primary.then(Reply(503, headers={"Retry-After": "30"}))
    standby.then(Reply(429, headers={"Retry-After": "10"}))
    ctx = context()
    with pytest.raises(AllReplicasFailed) as caught:
        call(Failover([Http("GET", primary.url), Http("GET", standby.url)]), ctx, how)
    e = caught.value
    assert [type(x) for x in e.errors] == [HttpError, HttpError]
    assert not isinstance(e, PermanentError)
    assert e.retry_after is not None
    assert (e.retry_after - ctx.clock.now()).total_seconds() == 10  # the soonest replica


def test_failover_composes_with_breakers_and_faults(trio: list[Service]) -> None:
    primary, standby, _ = trio
    breaker = CircuitBreaker(Http("GET", primary.url + "/a"), failures=1, reset_after=60)
    primary.then(Reply(503))
    failover = Failover([breaker, Faulty(Http("GET", standby.url + "/b"), fail_rate=0.0, seed=1)])
    first, second = context(), context(attempt=2)
    assert failover(first) == {"ok": True}
    assert failover(second) == {"ok": True}
    assert [(c.target[-1], c.outcome) for c in second.calls.calls()] == [("a", "rejected"), ("b", "ok")]
    assert primary.hits == 1


def test_failover_through_the_coordinator(trio: list[Service], sqlite_url: str) -> None:
    primary, standby, _ = trio
    primary.default = Reply(503)
    hotel = Failover([Http("POST", primary.url + "/primary"), Http("POST", standby.url + "/standby")])
    saga = Saga("stay")

    @saga.step(retry=Retry.none())
    def book(ctx: StepContext) -> Any:
        booked = hotel(ctx, json={"nights": 1})
        return {"booked": booked, "calls": ctx.calls.to_json()}

    with EventStore(sqlite_url) as store, Coordinator(store, [saga], clock=VirtualClock()) as coordinator:
        view = coordinator.execute("stay", saga_id="stay-1")
    result = view.results["book"]
    assert [(c["target"].rsplit("/", 1)[-1], c["outcome"]) for c in result["calls"]] == [
        ("primary", "error"), ("standby", "ok"),
    ]
    assert primary.requests[0].headers["Idempotency-Key"] == standby.requests[0].headers["Idempotency-Key"]


# -- hedge ----------------------------------------------------------------------------------


@HOW
def test_a_hedge_that_wins_closes_the_slow_primary(trio: list[Service], how: str) -> None:
    primary, standby, _ = trio
    primary.then(Reply(200, {"from": "primary"}, delay=5.0))
    standby.then(Reply(200, {"from": "standby"}))
    ctx = context()
    began = time.monotonic()
    answer = call(Hedge([Http("GET", primary.url + "/primary"), Http("GET", standby.url + "/standby")],
                        after=0.05), ctx, how)
    assert answer == {"from": "standby"}
    assert time.monotonic() - began < 2.0
    assert primary.left.wait(2.0), "the primary's server saw its client go"
    assert len(primary.gone) == 1
    assert summary(ctx) == [("primary", "cancelled", None), ("standby", "ok", None)]


@HOW
def test_a_hedge_that_loses_closes_the_hedged_request(trio: list[Service], how: str) -> None:
    primary, standby, _ = trio
    primary.then(Reply(200, {"from": "primary"}, delay=0.3))
    standby.then(Reply(200, {"from": "standby"}, delay=5.0))
    ctx = context()
    answer = call(Hedge([Http("GET", primary.url + "/primary"), Http("GET", standby.url + "/standby")],
                        after=0.05), ctx, how)
    assert answer == {"from": "primary"}
    assert standby.hits == 1, "the hedge was sent"
    assert standby.left.wait(2.0), "the standby's server saw its client go"
    assert primary.gone == []
    assert summary(ctx) == [("primary", "ok", None), ("standby", "cancelled", None)]


def test_a_quick_primary_sends_no_hedge(trio: list[Service]) -> None:
    primary, standby, _ = trio
    ctx = context()
    assert Hedge([Http("GET", primary.url), Http("GET", standby.url)], after=1.0)(ctx) == {"ok": True}
    assert standby.hits == 0 and len(ctx.calls) == 1


def test_a_failing_leg_starts_the_next_at_once(trio: list[Service]) -> None:
    primary, standby, _ = trio
    primary.then(Reply(503))
    standby.then(Reply(500))
    began = time.monotonic()
    ctx = context()
    hedge = Hedge([Http("GET", s.url + f"/{s.name}") for s in trio], after=10.0)
    assert hedge(ctx) == {"ok": True}
    assert time.monotonic() - began < 2.0
    assert summary(ctx) == [("primary", "error", 503), ("standby", "error", 500), ("spare", "ok", None)]


def test_a_hedge_fails_permanently_or_when_all_fail(trio: list[Service]) -> None:
    primary, standby, _ = trio
    primary.then(Reply(400), Reply(503))
    standby.then(Reply(200, delay=5.0), Reply(503))
    with pytest.raises(HttpRejected):
        Hedge([Http("GET", primary.url), Http("GET", standby.url)], after=0.0)(context())
    assert standby.left.wait(2.0)
    with pytest.raises(AllReplicasFailed):
        Hedge([Http("GET", primary.url), Http("GET", standby.url)], after=0.0)(context())


def test_a_hedge_runs_from_inside_an_event_loop_and_around_functions() -> None:
    async def slow(**_: Any) -> str:
        await asyncio.sleep(5)
        return "slow"

    hedge = Hedge([Function(slow, target="slow"), Function(lambda **_: "fast", target="fast")], after=0.01)

    async def main() -> Any:
        return hedge(context())  # a plain call made where a loop already runs

    assert asyncio.run(main()) == "fast"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Failover([]), "at least one replica"),
        (lambda: Failover("http://x"), "list of adapters"),
        (lambda: Failover([lambda ctx: 1]), "must be adapters"),
        (lambda: Hedge([Function(print)], after=-1), "after must be"),
    ],
)
def test_bad_replica_lists_are_refused(build: Any, message: str) -> None:
    with pytest.raises(InvalidAdapter, match=message):
        build()


def test_an_async_step_awaits_a_hedge_through_the_coordinator(trio: list[Service], sqlite_url: str) -> None:
    primary, standby, _ = trio
    primary.then(Reply(200, {"from": "primary"}, delay=5.0))
    standby.then(Reply(200, {"from": "standby"}))
    stock = Hedge([Http("GET", primary.url + "/primary"), Http("GET", standby.url + "/standby")], after=0.05)
    saga = Saga("order")

    @saga.step(retry=Retry.none(), timeout=10)
    async def check_stock(ctx: StepContext) -> Any:
        return {"stock": await stock.acall(ctx), "calls": ctx.calls.to_json()}

    with EventStore(sqlite_url) as store, Coordinator(store, [saga], clock=VirtualClock()) as coordinator:
        view = coordinator.execute("order", saga_id="order-1")
    result = view.results["check_stock"]
    assert result["stock"] == {"from": "standby"}
    assert [c["outcome"] for c in result["calls"]] == ["cancelled", "ok"]
    assert primary.left.wait(2.0)

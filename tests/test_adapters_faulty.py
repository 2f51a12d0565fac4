"""Faulty: reproducible injected failures and delays that cost no real time on a virtual clock;
and the call log that adapters fill."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest

from saga import Coordinator, EventStore, Retry, Saga, StepContext, VirtualClock
from saga.adapters import Failover, Faulty, Function, InjectedFault, InvalidAdapter
from saga.calls import Call, CallLog


def context(key: str, attempt: int = 1, clock: VirtualClock | None = None) -> StepContext:
    return StepContext(
        saga_id=key, saga_name="sim", step="s", attempt=attempt, idempotency_key=f"{key}/s/do",
        input=None, results={}, clock=clock or VirtualClock(),
    )


def failed_keys(faulty: Faulty, keys: list[str], attempt: int = 1) -> set[str]:
    out = set()
    for k in keys:
        try:
            faulty(context(k, attempt))
        except InjectedFault:
            out.add(k)
    return out


KEYS = [f"saga-{i}" for i in range(400)]


def test_the_same_seed_fails_the_same_calls() -> None:
    inner = Function(lambda: "ok", target="svc")
    first = failed_keys(Faulty(inner, fail_rate=0.3, seed=7), KEYS)
    assert first == failed_keys(Faulty(inner, fail_rate=0.3, seed=7), KEYS)
    assert first != failed_keys(Faulty(inner, fail_rate=0.3, seed=8), KEYS)
    assert first != failed_keys(Faulty(inner, fail_rate=0.3, seed=7), KEYS, attempt=2)
    assert 0.2 < len(first) / len(KEYS) < 0.4


def test_the_draws_do_not_depend_on_thread_interleaving() -> None:
    faulty = Faulty(Function(lambda: time.sleep(0.001), target="svc"), fail_rate=0.5, seed="s")
    expected = failed_keys(faulty, KEYS)

    def one(k: str) -> str | None:
        try:
            faulty(context(k))
        except InjectedFault:
            return k
        return None

    with ThreadPoolExecutor(8) as pool:
        assert {k for k in pool.map(one, KEYS) if k} == expected


def test_async_calls_draw_the_same_as_plain_ones() -> None:
    faulty = Faulty(Function(lambda: "ok", target="svc"), fail_rate=0.5, seed=3)

    async def run() -> set[str]:
        out = set()
        for k in KEYS[:100]:
            try:
                await faulty.acall(context(k))
            except InjectedFault:
                out.add(k)
        return out

    assert asyncio.run(run()) == failed_keys(faulty, KEYS[:100])


def test_rates_zero_and_one() -> None:
    inner = Function(lambda: "ok", target="svc")
    assert failed_keys(Faulty(inner, fail_rate=0.0, seed=1), KEYS) == set()
    assert failed_keys(Faulty(inner, fail_rate=1.0, seed=1), KEYS) == set(KEYS)


def test_successive_calls_in_one_attempt_draw_afresh() -> None:
    faulty = Faulty(Function(lambda: "ok", target="svc"), fail_rate=0.5, seed=11)
    ctx = context("one")
    outcomes = []
    for _ in range(40):
        try:
            faulty(ctx)
            outcomes.append(True)
        except InjectedFault:
            outcomes.append(False)
    assert True in outcomes and False in outcomes
    assert [c.outcome == "ok" for c in ctx.calls.calls()] == outcomes


def test_around_a_wrapper_successive_calls_draw_afresh_too() -> None:
    inner = Failover([Function(lambda: "a", target="a"), Function(lambda: "b", target="b")])
    faulty = Faulty(inner, fail_rate=0.5, seed=4)
    ctx = context("wrapped")
    outcomes = []
    for _ in range(40):
        try:
            outcomes.append(faulty(ctx))
        except InjectedFault:
            outcomes.append("fault")
    assert ("a", "fault") in set(pairwise(outcomes))  # a pass is not final


def test_latency_on_a_virtual_clock_costs_no_real_time() -> None:
    clock = VirtualClock()
    start = clock.now()
    faulty = Faulty(Function(lambda: "ok", target="svc"), fail_rate=0.2, latency=0.5, seed=1)
    began = time.monotonic()
    failures = 0
    for i in range(10_000):
        ctx = context(f"k{i}", clock=clock)
        try:
            faulty(ctx)
        except InjectedFault:
            failures += 1
            [c] = ctx.calls.calls()
            assert c.outcome == "error" and c.duration == 0.5 and c.error is not None
            assert c.error.type == "InjectedFault" and c.target == "svc" and c.adapter == "function"
    assert time.monotonic() - began < 10.0
    assert clock.now() - start == timedelta(seconds=5000)
    assert 1500 < failures < 2500


def test_latency_ranges_and_async_sleep_on_the_clock() -> None:
    clock = VirtualClock()
    start = clock.now()
    faulty = Faulty(Function(lambda: "ok", target="svc"), latency=(1.0, 3.0), seed=2)

    async def run() -> None:
        for i in range(100):
            await faulty.acall(context(f"k{i}", clock=clock))

    asyncio.run(run())
    assert 100 < (clock.now() - start).total_seconds() < 300


def test_real_latency_on_a_real_clock() -> None:
    faulty = Faulty(Function(lambda: "ok", target="svc"), latency=0.1)
    ctx = StepContext(saga_id="r", saga_name="sim", step="s", attempt=1, idempotency_key="r/s/do",
                      input=None, results={})
    began = time.monotonic()
    assert faulty(ctx) == "ok"
    assert time.monotonic() - began >= 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fail_rate": 1.5}, "fail_rate must be"),
        ({"fail_rate": float("nan")}, "fail_rate must be"),
        ({"latency": -1}, "latency must be"),
        ({"latency": (2, 1)}, "latency must be"),
        ({"seed": 1.5}, "seed must be"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidAdapter, match=message):
        Faulty(Function(print), **kwargs)


def test_a_simulated_service_through_the_coordinator(sqlite_url: str) -> None:
    clock = VirtualClock()
    service = Faulty(Function(lambda **r: {"done": r["n"]}, target="svc"), fail_rate=0.4, latency=2.0, seed=5)
    saga = Saga("sim")

    @saga.step(retry=Retry.fixed(1.0, attempts=10))
    def work(ctx: StepContext) -> Any:
        # The coordinator does not hand its clock to steps yet: give the context ours.
        return service(replace(ctx, clock=clock), n=ctx.input)

    began = time.monotonic()
    with EventStore(sqlite_url) as store, Coordinator(store, [saga], clock=clock) as coordinator:
        views = [coordinator.execute("sim", i, saga_id=f"sim-{i}") for i in range(30)]
    assert time.monotonic() - began < 20
    assert all(v.status.value == "completed" for v in views)
    assert [v.results["work"] for v in views] == [{"done": i} for i in range(30)]
    attempts = sum(v.steps["work"].attempts for v in views)
    assert attempts > 30  # some attempts failed and were retried


# -- the call log ---------------------------------------------------------------------------


def test_calls_keep_the_order_they_started_in_not_the_order_they_ended() -> None:
    log = CallLog()
    clock = VirtualClock()
    slow = log.begin("http", "slow", clock)
    clock.advance(1)
    fast = log.begin("http", "fast", clock)
    clock.advance(1)
    fast.finish("ok")
    slow.finish("cancelled")
    assert [(c.target, c.outcome, c.duration) for c in log.calls()] == [
        ("slow", "cancelled", 2.0), ("fast", "ok", 1.0),
    ]


def test_a_call_still_running_is_reported_cancelled_and_finishing_twice_keeps_the_first() -> None:
    log = CallLog()
    clock = VirtualClock()
    pending = log.begin("sql", "db", clock)
    clock.advance(3)
    [c] = log.calls()
    assert c.outcome == "cancelled" and c.duration == 3.0
    pending.finish("error", ValueError("x" * 2000))
    pending.finish("ok")
    [c] = log.calls()
    assert c.outcome == "error" and c.error is not None and c.error.type == "ValueError"
    assert len(c.error.message) < 600


def test_calls_round_trip_through_json() -> None:
    log = CallLog()
    log.begin("http", "http://a/x", VirtualClock()).finish("rejected", RuntimeError("open"))
    [c] = log.calls()
    assert Call.model_validate(c.to_json()) == c
    assert log.to_json() == [c.to_json()]
    with pytest.raises(ValueError, match="outcome"):
        Call.model_validate({**c.to_json(), "outcome": "maybe"})


def test_the_log_is_safe_under_threads() -> None:
    log = CallLog()
    clock = VirtualClock()

    def many(n: int) -> None:
        for i in range(200):
            log.begin("function", f"{n}-{i}", clock).finish("ok")

    threads = [threading.Thread(target=many, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls = log.calls()
    assert len(calls) == 1600 and all(c.outcome == "ok" for c in calls)
    for n in range(8):
        mine = [c.target for c in calls if c.target.startswith(f"{n}-")]
        assert mine == [f"{n}-{i}" for i in range(200)]


def test_a_context_built_without_calls_or_clock_still_has_both() -> None:
    a = StepContext(saga_id="a", saga_name="n", step="s", attempt=1, idempotency_key="k", input=None,
                    results={})
    b = StepContext(saga_id="a", saga_name="n", step="s", attempt=1, idempotency_key="k", input=None,
                    results={})
    assert a.calls is not b.calls and len(a.calls) == 0
    assert a.clock.now().tzinfo is not None
    assert a == b  # the log and the clock are not part of a context's value

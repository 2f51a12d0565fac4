"""Time limits on the coordinator's clock: an attempt that ends past its limit timed out."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from saga import Coordinator, EventStore, PermanentError, Retry, Saga, StepContext, VirtualClock
from saga import events as ev


@pytest.mark.parametrize("ends", ["returns", "raises"])
def test_a_step_sleeping_past_its_limit_on_a_virtual_clock_timed_out_at_the_limit(
    ends: str, store_url: str
) -> None:
    clock = VirtualClock(datetime(2030, 1, 1, tzinfo=UTC))
    saga = Saga("slow")

    @saga.step(timeout=5.0, retry=Retry.none())
    def wait(ctx: StepContext) -> str:
        ctx.clock.sleep(10.0)  # virtual: no real time passes
        if ends == "raises":
            raise PermanentError("too late anyway")
        return "done"

    with EventStore(store_url) as store, Coordinator(store, [saga], clock=clock) as c:
        view = c.execute("slow", saga_id="s-1")
        events = [s.event for s in store.load("s-1")]
    [started] = [e for e in events if isinstance(e, ev.StepAttemptStarted)]
    [failed] = [e for e in events if isinstance(e, ev.StepAttemptFailed)]
    assert started.timeout_at == datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert failed.timed_out and failed.error_type == "AttemptTimedOut"
    assert failed.at == started.timeout_at
    assert not any(isinstance(e, ev.StepSucceeded) for e in events)
    assert view.status == "compensated" and view.steps["wait"].in_doubt


def test_a_step_ending_just_before_its_limit_is_not_timed_out(store_url: str) -> None:
    clock = VirtualClock(datetime(2030, 1, 1, tzinfo=UTC))
    saga = Saga("quick")

    @saga.step(timeout=5.0, retry=Retry.none())
    def wait(ctx: StepContext) -> str:
        ctx.clock.sleep(4.999)
        return "done"

    with EventStore(store_url) as store, Coordinator(store, [saga], clock=clock) as c:
        view = c.execute("quick")
    assert view.status == "completed" and view.results["wait"] == "done"


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_without_step_threads_attempts_run_inline_and_limits_follow_the_clock(kind: str) -> None:
    clock = VirtualClock(datetime(2030, 1, 1, tzinfo=UTC))
    saga = Saga("inline")
    threads: list[str] = []

    def body(ctx: StepContext) -> str:
        threads.append(threading.current_thread().name)
        ctx.clock.sleep(2.0 if ctx.attempt == 1 else 0.5)  # the first attempt overruns its limit
        return "done"

    if kind == "plain":
        saga.step(name="work", timeout=1.0, retry=Retry.fixed(1.0, attempts=2))(body)
    else:
        async def work(ctx: StepContext) -> str:
            return body(ctx)

        saga.step(timeout=1.0, retry=Retry.fixed(1.0, attempts=2))(work)

    with EventStore("memory://") as store, Coordinator(store, [saga], clock=clock,
                                                       step_threads=False) as c:
        view = c.execute("inline", saga_id="i-1")
        events = [s.event for s in store.load("i-1")]
    assert threads == [threading.current_thread().name] * 2  # no step thread was used
    [failed] = [e for e in events if isinstance(e, ev.StepAttemptFailed)]
    assert failed.timed_out and failed.at == datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert view.status == "completed" and view.steps["work"].attempts == 2

"""An async step's timeout holds whatever the step does: swallows cancellation, blocks, never returns."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from saga import Coordinator, EventStore, Retry, Saga, SagaStatus, StepContext
from saga import events as ev

LIMIT = 0.3


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test, so that steps stuck on purpose end with it."""
    event = threading.Event()
    yield event
    event.set()


def _saga(body: Callable[[StepContext], Coroutine[Any, Any, Any]], undone: list[int]) -> Saga:
    saga = Saga("async-limit")
    step = saga.step(name="call", retry=Retry.none(), timeout=LIMIT)(body)

    @step.compensate
    def undo(ctx: StepContext) -> None:
        undone.append(ctx.attempt)

    return saga


def _run_timed(store: EventStore, saga: Saga) -> tuple[float, ev.StepAttemptFailed]:
    coordinator = Coordinator(store, [saga], poll_interval=0.05, lease=1.5)
    t0 = time.monotonic()
    view = coordinator.execute("async-limit", {}, saga_id="a-1")
    elapsed = time.monotonic() - t0
    coordinator.close()
    assert view.status is SagaStatus.COMPENSATED
    (failed,) = [e.event for e in store.load("a-1") if e.type == "StepAttemptFailed"]
    assert isinstance(failed, ev.StepAttemptFailed)
    (started,) = [e.event for e in store.load("a-1") if e.type == "StepAttemptStarted"]
    # Recorded as timed out at its limit (on the coordinator's clock), not when the step gave in.
    assert failed.timed_out and failed.error_type == "AttemptTimedOut"
    assert (failed.at - started.at).total_seconds() < LIMIT + 0.5
    return elapsed, failed


def test_an_async_step_that_blocks_its_event_loop_times_out_at_its_limit(
    sqlite_store: EventStore, release: threading.Event
) -> None:
    undone: list[int] = []

    async def call(ctx: StepContext) -> str:
        time.sleep(2.0)  # blocks the loop: no cancellation can reach it
        return "late"

    elapsed, _ = _run_timed(sqlite_store, _saga(call, undone))
    assert elapsed < 1.5
    assert undone == [1]  # timed out: in doubt, so compensated


def test_an_async_step_that_swallows_its_cancellation_times_out_at_its_limit(
    sqlite_store: EventStore, release: threading.Event
) -> None:
    undone: list[int] = []

    async def call(ctx: StepContext) -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(2.0)  # carries on regardless
        return "finished anyway"

    elapsed, _ = _run_timed(sqlite_store, _saga(call, undone))
    assert elapsed < 1.5
    assert undone == [1]


def test_an_async_step_that_never_returns_frees_its_worker_and_its_lease(
    sqlite_store: EventStore, release: threading.Event
) -> None:
    undone: list[int] = []

    async def call(ctx: StepContext) -> str:
        while not release.is_set():  # never returns (until the test ends)
            try:
                time.sleep(0.05)
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                pass
        return "released"

    saga = _saga(call, undone)
    coordinator = Coordinator(sqlite_store, [saga], poll_interval=0.05, lease=0.6)
    coordinator.start("async-limit", {}, saga_id="a-1")
    coordinator.start("async-limit", {}, saga_id="a-2")
    driven: list[int] = []
    worker = threading.Thread(target=lambda: driven.append(coordinator.work(until_idle=True)))
    t0 = time.monotonic()
    worker.start()
    worker.join(5.0)
    assert not worker.is_alive(), "the worker is still held by the step"
    assert driven == [2] and time.monotonic() - t0 < 3.0  # one slot served both sagas
    coordinator.close()
    for saga_id in ("a-1", "a-2"):
        summary = sqlite_store.summary(saga_id)
        assert summary.status is SagaStatus.COMPENSATED and summary.lease_owner is None
    assert undone == [1, 1]

"""One coordinator shared by threads never drives one saga in two threads at once."""

from __future__ import annotations

import threading
import time

from saga import Coordinator, EventStore, Retry, Saga, SagaStatus, SagaView, StepContext


def _slow_saga(calls: list[tuple[str, int]], undone: list[str]) -> Saga:
    saga = Saga("shared")

    @saga.step(retry=Retry.fixed(0.05, attempts=3))
    def book(ctx: StepContext) -> dict[str, int]:
        calls.append((ctx.step, ctx.attempt))
        time.sleep(0.3)
        return {"calls": len(calls)}

    @book.compensate
    def unbook(ctx: StepContext) -> None:
        undone.append(ctx.step)

    @saga.step(retry=Retry.fixed(0.05, attempts=3))
    def pay(ctx: StepContext) -> str:
        calls.append((ctx.step, ctx.attempt))
        time.sleep(0.1)
        return "paid"

    return saga


def _check_one_clean_run(store: EventStore, saga_id: str, calls: list[tuple[str, int]],
                         undone: list[str]) -> None:
    assert calls == [("book", 1), ("pay", 1)], calls
    assert undone == []
    types = [e.type for e in store.load(saga_id)]
    assert types == ["SagaStarted", "StepAttemptStarted", "StepSucceeded", "StepAttemptStarted",
                     "StepSucceeded", "SagaCompleted"]
    assert store.summary(saga_id).lease_owner is None


def test_two_threads_running_one_saga_drive_it_once(store_url: str) -> None:
    calls: list[tuple[str, int]] = []
    undone: list[str] = []
    with EventStore(store_url) as store:
        coordinator = Coordinator(store, [_slow_saga(calls, undone)], poll_interval=0.05)
        saga_id = coordinator.start("shared", {}, saga_id="s-1")
        views: list[SagaView] = []
        errors: list[BaseException] = []
        gate = threading.Barrier(2)

        def run() -> None:
            gate.wait()
            try:
                views.append(coordinator.run(saga_id))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        coordinator.close()
        assert errors == []
        assert [v.status for v in views] == [SagaStatus.COMPLETED] * 2
        assert views[0] == views[1]
        _check_one_clean_run(store, saga_id, calls, undone)


def test_run_while_work_drives_the_same_saga_in_another_thread(store_url: str) -> None:
    calls: list[tuple[str, int]] = []
    undone: list[str] = []
    with EventStore(store_url) as store:
        coordinator = Coordinator(store, [_slow_saga(calls, undone)], poll_interval=0.05)
        saga_id = coordinator.start("shared", {}, saga_id="s-2")
        stop = threading.Event()
        worker = threading.Thread(target=coordinator.work, kwargs={"stop": stop})
        worker.start()
        try:
            deadline = time.monotonic() + 10
            while not calls and time.monotonic() < deadline:  # the worker runs the first step
                time.sleep(0.01)
            view = coordinator.run(saga_id)
        finally:
            stop.set()
            worker.join(20)
            coordinator.close()
        assert view.status is SagaStatus.COMPLETED
        _check_one_clean_run(store, saga_id, calls, undone)

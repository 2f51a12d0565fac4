"""Plain steps with a timeout run on reusable daemon threads: a hung step never blocks anything."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from saga import Coordinator, EventStore, Retry, Saga, SagaStatus, StepContext, VirtualClock
from saga.attempts import project
from saga.store.sql import SqlEventStore


def test_a_hung_step_does_not_hold_up_the_next_attempts_or_the_threads_after_it(
    sqlite_url: str, clock: VirtualClock
) -> None:
    release = threading.Event()
    threads: list[str] = []
    saga = Saga("hangs-once")

    @saga.step(retry=Retry.fixed(1.0, attempts=3), timeout=0.1)
    def step(ctx: StepContext) -> int:
        threads.append(threading.current_thread().name)
        assert threading.current_thread().daemon
        if ctx.saga_id == "first" and ctx.attempt == 1:
            release.wait(10)  # hung until the end of the test
        return ctx.attempt

    store = EventStore(sqlite_url)
    coordinator = Coordinator(store, sagas=[saga], clock=clock)
    try:
        first = coordinator.run(coordinator.start("hangs-once", None, saga_id="first"))
        assert first.status is SagaStatus.COMPLETED and first.results == {"step": 2}
        t0 = time.monotonic()
        for i in range(20):  # later sagas reuse idle threads and never wait for the hung one
            view = coordinator.run(coordinator.start("hangs-once", None, saga_id=f"next-{i}"))
            assert view.results == {"step": 1}
        assert time.monotonic() - t0 < 5
        assert not release.is_set()
        assert all(name == "saga-step-step" for name in threads)
    finally:
        release.set()
        coordinator.close()
        store.close()


def test_a_step_hung_forever_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import threading
        from saga import Coordinator, EventStore, Retry, Saga

        saga = Saga("hangs")

        @saga.step(retry=Retry.none(), timeout=0.1)
        def step(ctx):
            threading.Event().wait()  # never returns

        store = EventStore({f"sqlite:///{tmp_path / 'hang.db'}"!r})
        coordinator = Coordinator(store, sagas=[saga])
        print(coordinator.run(coordinator.start("hangs")).status.value, flush=True)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "compensated"


def test_the_attempts_of_one_drive_run_on_one_step_thread_and_a_hung_one_is_left_behind(
    sqlite_url: str,
) -> None:
    """The attempts of a drive run one after another on the step thread the drive runs on (no
    handoff per attempt); one that passes its limit is abandoned there, and the drive goes on
    from its timeout on another step thread, while the caller's thread only waits."""
    release = threading.Event()
    ran: list[tuple[str, int, int]] = []
    saga = Saga("three")

    def make(name: str) -> None:
        @saga.step(name=name, retry=Retry.fixed(0.01, attempts=2), timeout=0.3)
        def step(ctx: StepContext) -> int:
            ran.append((ctx.step, ctx.attempt, threading.get_ident()))
            assert threading.current_thread().daemon
            if ctx.saga_id == "hangs" and ctx.step == "b" and ctx.attempt == 1:
                release.wait(10)  # past its limit: abandoned, still blocked here
            return ctx.attempt

    for name in ("a", "b", "c"):
        make(name)
    store = EventStore(sqlite_url)
    assert isinstance(store, SqlEventStore)
    appended: list[int] = []  # the threads that wrote events, seen by the driver's own trace

    @event.listens_for(store.engine, "connect")
    def _trace(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.set_trace_callback(lambda sql: appended.append(threading.get_ident())
                                      if sql.startswith("INSERT INTO saga_events") else None)

    store.engine.dispose()  # connections opened from now on are traced

    coordinator = Coordinator(store, sagas=[saga])
    try:
        view = coordinator.execute("three", None, saga_id="calm")
        assert view.status is SagaStatus.COMPLETED
        idents = {ident for _, _, ident in ran}
        assert len(idents) == 1 and threading.get_ident() not in idents
        # the drive's appends are made there too: the caller's thread only waited
        assert appended and set(appended) == idents

        ran.clear()
        t0 = time.monotonic()
        view = coordinator.execute("three", None, saga_id="hangs")
        assert time.monotonic() - t0 < 5 and not release.is_set()
        assert view.status is SagaStatus.COMPLETED and view.results == {"a": 1, "b": 2, "c": 1}
        outcomes = [(a.step, a.attempt, a.outcome) for a in project(
            (s.seq, s.event, s.data) for s in store.load("hangs"))]
        assert outcomes == [("a", 1, "succeeded"), ("b", 1, "timed_out"), ("b", 2, "succeeded"),
                            ("c", 1, "succeeded")]
        by_step = {(step, attempt): ident for step, attempt, ident in ran}
        assert by_step["a", 1] == by_step["b", 1]  # one thread, until it was left behind
        assert by_step["b", 2] == by_step["c", 1] != by_step["b", 1]  # the drive went on elsewhere
    finally:
        release.set()
        coordinator.close()
        store.close()

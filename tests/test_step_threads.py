"""Plain steps with a timeout run on reusable daemon threads: a hung step never blocks anything."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from saga import Coordinator, EventStore, Retry, Saga, SagaStatus, StepContext, VirtualClock


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

"""A worker idles as its clock says: a user's own real-time clock wakes on PostgreSQL's notifications."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from saga import Clock, Coordinator, EventStore, Saga, SagaStatus, StepContext


class OfficeClock(Clock):
    """A user's clock: real time, not a ``SystemClock`` subclass."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(seconds, 0.0))


@pytest.mark.postgres
def test_a_real_time_clock_of_any_class_wakes_on_notifications(postgres_url: str) -> None:
    saga = Saga("wake")

    @saga.step
    def mark(ctx: StepContext) -> str:
        return "marked"

    with EventStore(postgres_url) as worker_store, EventStore(postgres_url) as client_store:
        worker = Coordinator(worker_store, [saga], clock=OfficeClock(), poll_interval=30.0)
        client = Coordinator(client_store, [saga], clock=OfficeClock())
        stop = threading.Event()
        thread = threading.Thread(target=worker.work, kwargs={"stop": stop})
        thread.start()
        try:
            time.sleep(0.5)  # the worker found nothing and idles for up to 30 s
            t0 = time.monotonic()
            saga_id = client.start("wake", {})
            while client.get(saga_id).status is not SagaStatus.COMPLETED:
                assert time.monotonic() - t0 < 1.0, "the idle worker did not wake on the notification"
                time.sleep(0.01)
        finally:
            stop.set()
            thread.join(10)
            worker.close()
        assert not thread.is_alive()

"""Pins the public API's types: mypy checks this file, pytest runs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, assert_type

from saga import (
    Coordinator,
    EventStore,
    Retry,
    Saga,
    SagaStatus,
    SagaSummary,
    SagaView,
    Step,
    StepContext,
    StoredEvent,
    VirtualClock,
)
from saga.definition import Compensation


def test_public_api_types(tmp_path: Path) -> None:
    trip = Saga("typed-trip", version=1)

    decorator = trip.step(retry=Retry.fixed(0.1, attempts=2), timeout=1.0)
    assert_type(decorator, Callable[[Callable[[StepContext], Any]], Step])

    @decorator
    def reserve(ctx: StepContext) -> dict[str, str]:
        return {"ref": ctx.idempotency_key}

    assert_type(reserve, Step)

    @reserve.compensate
    def cancel(ctx: StepContext) -> None:
        """Nothing to undo in this test."""

    assert_type(cancel, Compensation)

    with EventStore(f"sqlite:///{tmp_path / 't.db'}") as store:
        assert_type(store, EventStore)
        coordinator = Coordinator(store, sagas=[trip], clock=VirtualClock())
        saga_id = coordinator.start("typed-trip", {"x": 1})
        assert_type(saga_id, str)
        view = coordinator.run(saga_id)
        assert_type(view, SagaView)
        assert_type(view.status, SagaStatus)
        assert view.status is SagaStatus.COMPLETED
        history = store.load(saga_id)
        assert_type(history, list[StoredEvent])
        found = store.find(status=SagaStatus.COMPLETED, limit=5)
        assert_type(found, list[SagaSummary])
        assert [s.saga_id for s in found] == [saga_id]
        assert_type(coordinator.work(until_idle=True), int)

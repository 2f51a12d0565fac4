"""Payload limits, on every backend: too large is refused before anything is written.

An input above the limit never becomes a saga. A step whose *result* is
above the limit has already had its effect, so the attempt is recorded as
failed for good (``PayloadTooLarge``, not retried) with its effect in doubt:
the saga compensates, this step included, instead of wedging on an append
that can never succeed.
"""

from __future__ import annotations

import pytest

from saga import Coordinator, EventStore, PayloadTooLarge, Retry, Saga, SagaStatus, StepContext
from saga._engine.reading import view as read_view

LIMIT = 10_000


def sagas(effects: list[str]) -> list[Saga]:
    bulky = Saga("bulky")

    @bulky.step()
    def small(ctx: StepContext) -> dict[str, int]:
        effects.append("small")
        return {"n": 1}

    @small.compensate()
    def undo_small(ctx: StepContext) -> None:
        effects.append("undo small")

    @bulky.step(retry=Retry.fixed(0.0, attempts=3))
    def large(ctx: StepContext) -> str:
        effects.append("large")
        return "x" * (2 * LIMIT if ctx.input.get("big") else 10)

    @large.compensate()
    def undo_large(ctx: StepContext) -> None:
        effects.append("undo large")

    return [bulky]


def test_oversized_input_is_refused_and_writes_nothing(store_url: str) -> None:
    with EventStore(store_url, max_payload=LIMIT) as store:
        coordinator = Coordinator(store, sagas([]))
        with pytest.raises(PayloadTooLarge, match=f"at most {LIMIT}"):
            coordinator.start("bulky", {"blob": "y" * LIMIT}, saga_id="too-big")
        with pytest.raises(PayloadTooLarge):
            coordinator.execute("bulky", {"blob": "y" * LIMIT}, saga_id="too-big")
        assert store.find() == []
        # Just under the limit is fine.
        coordinator.start("bulky", {"blob": "y" * (LIMIT - 200)}, saga_id="fits")
        assert [s.saga_id for s in store.find()] == ["fits"]


def test_oversized_output_fails_the_step_and_compensates(store_url: str) -> None:
    effects: list[str] = []
    with EventStore(store_url, max_payload=LIMIT) as store:
        coordinator = Coordinator(store, sagas(effects))
        view = coordinator.execute("bulky", {"big": True}, saga_id="s1")
        assert view.status is SagaStatus.COMPENSATED
        assert effects == ["small", "large", "undo large", "undo small"]
        step = view.steps["large"]
        assert step.attempts == 1, "not retried: the same result would be too large again"
        failed = [e for e in store.load("s1") if e.type == "StepAttemptFailed"]
        assert len(failed) == 1
        assert failed[0].data["error_type"] == "PayloadTooLarge"
        assert "result too large" in failed[0].data["message"]
        assert failed[0].data["retried"] is False
        assert all(len(str(e.data)) < LIMIT for e in store.load("s1"))


def test_oversized_output_through_a_worker(store_url: str) -> None:
    effects: list[str] = []
    with EventStore(store_url, max_payload=LIMIT) as store:
        coordinator = Coordinator(store, sagas(effects))
        coordinator.start("bulky", {"big": True}, saga_id="w1")
        coordinator.start("bulky", {"big": False}, saga_id="w2")
        coordinator.work(until_idle=True)
        assert read_view(store, "w1").status is SagaStatus.COMPENSATED
        assert read_view(store, "w2").status is SagaStatus.COMPLETED
        assert effects.count("large") == 2

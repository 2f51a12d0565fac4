"""A log that names a step the registered definition lacks is refused, never guessed at."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import BaseModel

import saga as saga_lib
from saga import Coordinator, EventStore, Retry, Saga, SagaStatus, StepContext, VirtualClock
from tests.helpers import WorkerDied

LEASE = 30.0


def _booking(first_step: str, undone: list[str], *, crash_at_pay: bool) -> Saga:
    """``<first_step>`` (with a compensation), then ``pay``; the same name and version either way."""
    saga = Saga("booking", version=1)

    @saga.step(name=first_step, retry=Retry.fixed(1.0, attempts=2))
    def reserve(ctx: StepContext) -> dict[str, str]:
        return {"ref": "R-1"}

    @reserve.compensate
    def unreserve(ctx: StepContext) -> None:
        undone.append(ctx.step)

    @saga.step(retry=Retry.none())
    def pay(ctx: StepContext) -> str:
        if crash_at_pay:
            raise WorkerDied  # the process dies mid-attempt
        raise PermissionError("card declined")

    return saga


Rows = list[tuple[int, str, dict[str, Any]]]


def _renamed_mid_run(store: EventStore, clock: VirtualClock) -> tuple[str, Rows]:
    """A saga whose ``reserve`` succeeded and whose ``pay`` attempt was lost with its worker."""
    undone: list[str] = []
    old = Coordinator(store, [_booking("reserve", undone, crash_at_pay=True)], clock=clock, lease=LEASE)
    saga_id = old.start("booking", {}, saga_id="b-1")
    with pytest.raises(WorkerDied):
        old.run(saga_id)
    old.close()
    clock.advance(LEASE + 1)
    log = [(e.seq, e.type, e.data) for e in store.load(saga_id)]
    assert [t for _, t, _ in log] == ["SagaStarted", "StepAttemptStarted", "StepSucceeded",
                                      "StepAttemptStarted"]
    return saga_id, log


def test_run_refuses_a_saga_whose_log_names_a_step_the_definition_lacks(store_url: str) -> None:
    clock = VirtualClock()
    undone: list[str] = []
    with EventStore(store_url) as store:
        saga_id, before = _renamed_mid_run(store, clock)
        new = Coordinator(store, [_booking("reserve_v2", undone, crash_at_pay=False)], clock=clock)
        with pytest.raises(saga_lib.DefinitionMismatch, match=r"'reserve'.*version 1 of 'booking'"):
            new.run(saga_id)
        assert isinstance(saga_lib.DefinitionMismatch("x"), saga_lib.SagaError)
        assert [(e.seq, e.type, e.data) for e in store.load(saga_id)] == before
        assert undone == []
        assert new.get(saga_id).status is SagaStatus.RUNNING


def test_a_worker_logs_the_mismatch_releases_the_lease_and_parks_the_saga(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = VirtualClock()
    undone: list[str] = []
    with EventStore(store_url) as store:
        saga_id, before = _renamed_mid_run(store, clock)
        new = Coordinator(store, [_booking("reserve_v2", undone, crash_at_pay=False)], clock=clock,
                          worker_id="new-worker")
        other = new.start("booking", {}, saga_id="b-2")
        with caplog.at_level(logging.ERROR, logger="saga"):
            new.work(until_idle=True)
        *kept, parked = [(e.seq, e.type, e.data) for e in store.load(saga_id)]
        assert kept == before  # nothing but why it is parked
        assert parked[1] == "SagaParked" and "'reserve'" in parked[2]["reason"]
        assert undone == ["reserve_v2"]  # b-2's own compensation, nothing of b-1
        assert new.get(other).status is SagaStatus.COMPENSATED
        summary = store.summary(saga_id)
        assert summary.status is SagaStatus.RUNNING and summary.lease_owner is None
        messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any(saga_id in m and "'reserve'" in m and "does not have" in m for m in messages)


def test_a_compensation_attempt_of_a_step_that_lost_its_compensation_is_refused(
    sqlite_store: EventStore,
) -> None:
    clock = VirtualClock()
    saga = Saga("undo-gone", version=1)

    @saga.step(retry=Retry.none())
    def reserve(ctx: StepContext) -> str:
        return "R-1"

    @reserve.compensate
    def unreserve(ctx: StepContext) -> None:
        raise WorkerDied

    @saga.step(retry=Retry.none())
    def pay(ctx: StepContext) -> None:
        raise PermissionError("declined")

    old = Coordinator(sqlite_store, [saga], clock=clock, lease=LEASE)
    with pytest.raises(WorkerDied):
        old.execute("undo-gone", {}, saga_id="u-1")
    old.close()
    clock.advance(LEASE + 1)
    before = [e.type for e in sqlite_store.load("u-1")]
    assert before[-1] == "CompensationAttemptStarted"

    changed = Saga("undo-gone", version=1)
    changed.step(name="reserve", retry=Retry.none())(lambda ctx: "R-1")
    changed.step(name="pay", retry=Retry.none())(lambda ctx: None)
    with pytest.raises(saga_lib.DefinitionMismatch, match="a compensation of step 'reserve'"):
        Coordinator(sqlite_store, [changed], clock=clock).run("u-1")
    assert [e.type for e in sqlite_store.load("u-1")] == before


def test_a_drive_that_fails_unexpectedly_is_logged_and_the_worker_lives_on(
    sqlite_store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    class Old(BaseModel):
        city: str

    class New(BaseModel):
        city: str
        nights: int  # the stored input has none: it no longer validates

    clock = VirtualClock()
    old = Saga("stay", input_model=Old)
    old.step(name="book")(lambda ctx: "booked")
    Coordinator(sqlite_store, [old], clock=clock).start("stay", {"city": "Oslo"}, saga_id="s-old")

    new = Saga("stay", input_model=New)
    new.step(name="book")(lambda ctx: "booked")
    worker = Coordinator(sqlite_store, [new], clock=clock, worker_id="w")
    worker.start("stay", {"city": "Rome", "nights": 2}, saga_id="s-new")
    with caplog.at_level(logging.ERROR, logger="saga"):
        worker.work(until_idle=True)
    assert worker.get("s-new").status is SagaStatus.COMPLETED
    started, parked = sqlite_store.load("s-old")  # nothing started, and it says why
    assert (started.type, parked.type) == ("SagaStarted", "SagaParked")
    assert parked.data["reason"] == "the drive failed: ValidationError: nights: Field required"
    assert sqlite_store.summary("s-old").lease_owner is None
    assert any("s-old" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)

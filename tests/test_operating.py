"""Operator actions through the library, on SQLite and PostgreSQL: who and why, skip, fork,
bulk requests, and the pre-deploy check."""

from __future__ import annotations

import getpass
import threading
from collections.abc import Iterator
from datetime import datetime

import pytest

from saga import (
    Coordinator,
    EventStore,
    InvalidInput,
    InvalidOperation,
    Saga,
    SagaIdConflict,
    SagaStatus,
    StepContext,
    VirtualClock,
)
from saga import events as ev
from saga.operators.actions import default_by, skip
from saga.operators.bulk import Filters, act, select
from saga.operators.check import check
from saga.operators.fork import fork
from saga.store import reads
from saga.store.base import StoredEvent
from tests.fixtures import ops_sagas
from tests.fixtures.ops_sagas import RAN, shipment
from tests.helpers import check_log_invariants, logged, snapshot, types


@pytest.fixture
def sql_store(sql_url: str) -> Iterator[EventStore]:
    with EventStore(sql_url) as store:
        yield store


@pytest.fixture(autouse=True)
def _fresh_runs() -> None:
    RAN.clear()


def _coordinator(store: EventStore, clock: VirtualClock, *sagas: Saga) -> Coordinator:
    return Coordinator(store, list(sagas) or [shipment], clock=clock, poll_interval=60.0)


def _started(coordinator: Coordinator, sku: str, saga_id: str) -> str:
    coordinator.start("shipment", {"sku": sku}, saga_id=saga_id)
    coordinator.work(until_idle=True)
    return saga_id


# -- who and why -----------------------------------------------------------------------------


def test_cancel_and_retry_record_who_and_why(sql_store: EventStore, clock: VirtualClock) -> None:
    c = _coordinator(sql_store, clock)
    _started(c, "flaky", "s-cancel")
    c.cancel("s-cancel", reason="customer called", by="dana")
    _started(c, "stuck-undo", "s-retry")
    assert c.get("s-retry").status is SagaStatus.FAILED
    c.retry("s-retry", reason="warehouse is back")  # by: the login user
    (cancel,) = [e for e in sql_store.load("s-cancel") if e.type == "SagaCancelRequested"]
    assert (cancel.type, cancel.data["by"], cancel.data["reason"]) == (
        "SagaCancelRequested", "dana", "customer called")
    retry = sql_store.load("s-retry")[-1]
    assert (retry.type, retry.data["by"], retry.data["reason"]) == (
        "SagaRetryRequested", getpass.getuser(), "warehouse is back")
    assert default_by() == getpass.getuser()


def test_an_empty_by_or_a_bad_reason_is_refused_and_writes_nothing(
    sql_url: str, sql_store: EventStore, clock: VirtualClock
) -> None:
    c = _coordinator(sql_store, clock)
    _started(c, "flaky", "s-1")
    before = snapshot(sql_url)
    for kwargs, message in (({"by": " "}, "by must name who acts"),
                            ({"by": "x" * 201}, "by must be a string of at most 200"),
                            ({"reason": "a\x00b"}, "reason cannot be stored")):
        with pytest.raises(InvalidInput, match=message):
            c.cancel("s-1", **kwargs)
    assert snapshot(sql_url) == before


def test_version_1_operator_events_still_read() -> None:
    at = datetime(2030, 1, 1).astimezone()
    old = StoredEvent("s", 3, "SagaCancelRequested", {"reason": "r", "at": at.isoformat()}, at,
                      schema_version=1)
    assert old.event == ev.SagaCancelRequested(reason="r", at=at)
    assert isinstance(old.event, ev.SagaCancelRequested) and old.event.by is None
    started = StoredEvent("s", 1, "SagaStarted", {"name": "n", "version": 1, "at": at.isoformat()},
                          at, schema_version=1)
    assert isinstance(started.event, ev.SagaStarted) and started.event.forked_from is None
    newer = StoredEvent("s", 3, "SagaCancelRequested", {"at": at.isoformat()}, at, schema_version=3)
    with pytest.raises(ValueError, match="newer than this library knows"):
        _ = newer.event


# -- skip --------------------------------------------------------------------------------------


def test_skip_a_stuck_step_and_the_saga_completes_with_its_result(
    sql_store: EventStore, clock: VirtualClock
) -> None:
    c = _coordinator(sql_store, clock)
    _started(c, "flaky", "s-1")
    assert c.get("s-1").steps["charge"].status == "waiting"
    view = skip(sql_store, clock, "s-1", "charge", result={"payment": "by-phone"},
                sagas=[shipment], reason="paid by phone", by="dana")
    assert view.status is SagaStatus.RUNNING
    assert sql_store.due(clock.now()) == ["s-1"]  # woken now, not after the hour's backoff
    skipped = sql_store.load("s-1")[-1]
    assert skipped.type == "StepSkipped"
    assert {k: skipped.data[k] for k in ("step", "result", "by", "reason")} == {
        "step": "charge", "result": {"payment": "by-phone"}, "by": "dana", "reason": "paid by phone"}

    c.work(until_idle=True)
    done = c.get("s-1")
    assert done.status is SagaStatus.COMPLETED
    assert done.results["ship"] == {"shipped_with": {"payment": "by-phone"}}
    assert ("ship", {"payment": "by-phone"}) in RAN
    assert [r for r in RAN if r[0] == "charge"] == [("charge", {"hold": "H-flaky"})]  # not rerun
    check_log_invariants(logged(sql_store.load("s-1")), list(shipment.step_names))


def test_a_compensation_sees_the_skipped_steps_result(
    sql_store: EventStore, clock: VirtualClock
) -> None:
    flaky_then_fragile = ops_sagas.build()
    c = _coordinator(sql_store, clock, flaky_then_fragile)
    _started(c, "flaky", "s-2")
    # the input decides how ship behaves: fork-free way to fail ship after the skip
    skip(sql_store, clock, "s-2", "charge", result={"payment": "manual"},
         sagas=[flaky_then_fragile], by="dana")
    c.cancel("s-2", reason="customer changed plans", by="dana")
    c.work(until_idle=True)
    assert c.get("s-2").status is SagaStatus.COMPENSATED
    assert ("undo:charge", {"payment": "manual"}) in RAN
    assert ("undo:reserve", {"hold": "H-flaky"}) in RAN


def test_skipping_anything_but_the_stuck_step_is_refused_and_writes_nothing(
    sql_url: str, sql_store: EventStore, clock: VirtualClock
) -> None:
    c = _coordinator(sql_store, clock)
    _started(c, "flaky", "s-1")
    _started(c, "ok", "s-done")
    before = snapshot(sql_url)
    with pytest.raises(InvalidOperation, match="the step to skip is 'charge'"):
        skip(sql_store, clock, "s-1", "ship", result=None)
    with pytest.raises(InvalidOperation, match="the step to skip is 'charge'"):
        skip(sql_store, clock, "s-1", "reserve", result=None)
    with pytest.raises(InvalidOperation, match="is completed: only a running saga can be skipped"):
        skip(sql_store, clock, "s-done", "ship", result=None)
    with pytest.raises(InvalidInput, match="result for step 'charge' cannot be stored"):
        skip(sql_store, clock, "s-1", "charge", result={1, 2}, sagas=[shipment])
    c.cancel("s-1", by="dana")
    after_cancel = snapshot(sql_url)
    with pytest.raises(InvalidOperation, match="it is cancelled"):
        skip(sql_store, clock, "s-1", "charge", result=None)
    assert snapshot(sql_url) == after_cancel != before


# -- fork --------------------------------------------------------------------------------------


def test_fork_from_the_middle_copies_the_steps_before_and_runs_the_rest(
    sql_store: EventStore, clock: VirtualClock
) -> None:
    c = _coordinator(sql_store, clock)
    _started(c, "declined", "s-orig")
    original = c.get("s-orig")
    assert original.status is SagaStatus.COMPENSATED
    original_log = types(sql_store, "s-orig")
    RAN.clear()

    new_id = fork(sql_store, clock, "s-orig", from_step="charge", input={"sku": "ok"},
                  sagas=[shipment], new_id="s-fork", reason="card fixed", by="dana")
    assert new_id == "s-fork"
    c.work(until_idle=True)
    forked = c.get("s-fork")
    assert forked.status is SagaStatus.COMPLETED
    assert forked.results["reserve"] == {"hold": "H-declined"}  # the original's result, copied
    assert forked.results["charge"] == {"payment": "P-1", "hold": "H-declined"}
    assert [r[0] for r in RAN] == ["charge", "ship"]  # reserve is not run again
    assert types(sql_store, "s-fork")[:2] == ["SagaStarted", "StepCopied"]
    first, copied = sql_store.load("s-fork")[:2]
    assert first.data["forked_from"] == {"id": "s-orig", "step": "charge"}
    assert first.data["input"] == {"sku": "ok"}
    assert copied.data["copied_from"] == "s-orig" and copied.data["step"] == "reserve"
    assert "StepAttemptStarted" not in [e.type for e in sql_store.load("s-fork")
                                        if e.data.get("step") == "reserve"]

    # the original names the fork and is otherwise as it was
    assert types(sql_store, "s-orig") == [*original_log, "SagaForked"]
    named = sql_store.load("s-orig")[-1].data
    assert (named["fork"], named["step"], named["by"], named["reason"]) == (
        "s-fork", "charge", "dana", "card fixed")
    assert c.get("s-orig").status is SagaStatus.COMPENSATED
    assert sql_store.summary("s-orig").status is SagaStatus.COMPENSATED
    check_log_invariants(logged(sql_store.load("s-fork")), list(shipment.step_names))


def test_a_fork_of_a_waiting_saga_leaves_the_original_waiting(
    sql_store: EventStore, clock: VirtualClock
) -> None:
    c = _coordinator(sql_store, clock)
    _started(c, "flaky", "s-orig")
    wake = sql_store.summary("s-orig").wake_at
    new_id = c.fork("s-orig", from_step="charge", input={"sku": "ok"}, by="dana")
    assert sql_store.summary("s-orig").wake_at == wake  # not woken by the fork
    assert sql_store.due(clock.now()) == [new_id]
    c.work(until_idle=True)
    assert c.get(new_id).status is SagaStatus.COMPLETED
    assert c.get("s-orig").steps["charge"].status == "waiting"


def test_a_fork_from_a_step_never_reached_or_onto_a_taken_id_writes_nothing(
    sql_url: str, sql_store: EventStore, clock: VirtualClock
) -> None:
    c = _coordinator(sql_store, clock)
    _started(c, "declined", "s-orig")
    _started(c, "ok", "s-other")
    before = snapshot(sql_url)
    with pytest.raises(InvalidOperation, match="never reached step 'ship'"):
        fork(sql_store, clock, "s-orig", from_step="ship")
    with pytest.raises(SagaIdConflict, match="already used"):
        fork(sql_store, clock, "s-orig", from_step="charge", new_id="s-other")
    with pytest.raises(InvalidInput, match="input is not JSON"):
        fork(sql_store, clock, "s-orig", from_step="charge", input=float("nan"), sagas=[shipment])
    assert snapshot(sql_url) == before


# -- bulk --------------------------------------------------------------------------------------


def test_bulk_retry_dry_run_then_real_acts_on_the_same_sagas_once(
    sql_store: EventStore, clock: VirtualClock
) -> None:
    c = _coordinator(sql_store, clock)
    failed = {_started(c, "stuck-undo", f"f-{i}") for i in range(4)}
    _started(c, "declined", "compensated-1")
    _started(c, "flaky", "running-1")
    filters = Filters(status=SagaStatus.FAILED, name="shipment")
    would = set(select(sql_store, filters))
    assert would == failed
    assert set(select(sql_store, Filters(failed_step="charge"))) == failed | {"compensated-1"}
    assert set(select(sql_store, Filters(error_type="ConnectionError"))) == {"running-1"}
    started_at = clock.now()
    clock.advance(60)
    assert set(select(sql_store, Filters(since=clock.now()))) == set()
    # until is exclusive, as in saga list: the sagas started at started_at are before the next minute
    assert set(select(sql_store, Filters(until=started_at, status=SagaStatus.FAILED))) == set()
    assert set(select(sql_store, Filters(until=clock.now(), status=SagaStatus.FAILED))) == failed

    done = act(sql_store, clock, select(sql_store, filters), "retry", reason="API back", by="dana")
    assert set(done.acted) == would and done.skipped == []
    again = act(sql_store, clock, sorted(would), "retry", by="erin")
    assert again.acted == []
    assert [why for _, why in again.skipped] == [
        f"saga {i} is compensating: only a failed or parked saga can be retried" for i in sorted(would)]
    for saga_id in would:
        retries = [e for e in sql_store.load(saga_id) if e.type == "SagaRetryRequested"]
        assert [(e.data["by"], e.data["reason"]) for e in retries] == [("dana", "API back")]


def test_two_operators_retrying_the_same_sagas_at_once_act_on_each_once(
    sql_url: str, clock: VirtualClock
) -> None:
    with EventStore(sql_url) as store:
        c = _coordinator(store, clock)
        ids = sorted(_started(c, "stuck-undo", f"f-{i:02}") for i in range(12))
    results = []
    barrier = threading.Barrier(2)

    def operator(name: str) -> None:
        with EventStore(sql_url) as store:  # each operator has its own connection
            chosen = list(select(store, Filters(status=SagaStatus.FAILED)))
            barrier.wait()
            results.append(act(store, clock, chosen, "retry", by=name))

    threads = [threading.Thread(target=operator, args=(n,)) for n in ("dana", "erin")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acted = sorted(results[0].acted + results[1].acted)
    assert acted == ids  # each saga acted on by exactly one of them
    assert len(results[0].skipped) + len(results[1].skipped) == len(ids)
    with EventStore(sql_url) as store:
        for saga_id in ids:
            assert types(store, saga_id).count("SagaRetryRequested") == 1


@pytest.mark.parametrize("page_size", [None, 2])
def test_bulk_selects_as_saga_list_does_newest_started_first_on_every_store(
    store_url: str, clock: VirtualClock, page_size: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if page_size is not None:  # pages of two: the selection follows the list's cursor
        monkeypatch.setattr(reads, "MAX_LIMIT", page_size)
    with EventStore(store_url) as store:
        c = _coordinator(store, clock)
        for saga_id, sku in [("f-0", "stuck-undo"), ("c-0", "declined"), ("f-1", "stuck-undo"),
                             ("r-0", "flaky"), ("f-2", "stuck-undo")]:
            _started(c, sku, saga_id)
            clock.advance(1)
        c.retry("f-0", reason="undo once more")  # the oldest saga is now the last updated
        c.work(until_idle=True)
        chosen = list(select(store, Filters(failed_step="charge")))
        assert chosen == ["f-2", "f-1", "c-0", "f-0"]
        listed = store.list_sagas(failed_step="charge", limit=page_size or 50)
        assert chosen[:len(listed.rows)] == [r.saga_id for r in listed.rows]
        assert list(select(store, Filters(status=SagaStatus.FAILED))) == ["f-2", "f-1", "f-0"]
        assert list(select(store, Filters(error_type="ConnectionError"))) == ["r-0"]


def test_bulk_without_a_filter_is_refused(sql_store: EventStore) -> None:
    with pytest.raises(InvalidInput, match="needs at least one filter"):
        list(select(sql_store, Filters()))


# -- an action while a worker drives the saga --------------------------------------------------


def test_a_cancel_while_a_worker_runs_a_step_is_applied_once_and_the_worker_continues(
    sql_url: str, clock: VirtualClock
) -> None:
    entered, release = threading.Event(), threading.Event()
    saga = Saga("slow")

    @saga.step
    def first(ctx: StepContext) -> str:
        entered.set()
        assert release.wait(30)
        return "done"

    @first.compensate
    def undo_first(ctx: StepContext) -> None:
        RAN.append(("undo:first", ctx.result))

    @saga.step
    def second(ctx: StepContext) -> str:
        RAN.append(("second", None))
        return "never"

    with EventStore(sql_url) as store:
        worker = Coordinator(store, [saga], clock=clock, poll_interval=60.0)
        worker.start("slow", None, saga_id="s-1")
        driving = threading.Thread(target=worker.run, args=("s-1",))
        driving.start()
        assert entered.wait(30)
        with EventStore(sql_url) as operator_store:
            Coordinator(operator_store, [], clock=clock).cancel("s-1", reason="stop", by="dana")
        release.set()
        driving.join(30)
        assert not driving.is_alive()
        view = worker.get("s-1")
        assert view.status is SagaStatus.COMPENSATED
        assert types(store, "s-1").count("SagaCancelRequested") == 1
        assert types(store, "s-1").count("StepSucceeded") == 1  # the outcome, recorded after reload
        assert RAN == [("undo:first", "done")]  # second never ran; first was undone
        check_log_invariants(logged(store.load("s-1")), ["first", "second"])


# -- check -------------------------------------------------------------------------------------


def _in_flight(store: EventStore, clock: VirtualClock) -> None:
    c = _coordinator(store, clock)
    _started(c, "flaky", "waiting-at-charge")    # running, reached charge
    _started(c, "stuck-undo", "failed-undo")     # failed while undoing reserve
    _started(c, "ok", "completed")               # not in flight


def test_check_is_silent_on_compatible_changes(sql_store: EventStore, clock: VirtualClock) -> None:
    _in_flight(sql_store, clock)
    assert list(check(sql_store, ops_sagas.compatible)) == []
    assert list(check(sql_store, [ops_sagas.retuned])) == []
    assert list(check(sql_store, [shipment])) == []


def test_check_finds_each_kind_of_breakage(sql_store: EventStore, clock: VirtualClock) -> None:
    _in_flight(sql_store, clock)
    gone = list(check(sql_store, [ops_sagas.only_v2]))
    assert sorted((p.saga_id, p.kind) for p in gone) == [
        ("failed-undo", "not_registered"), ("waiting-at-charge", "not_registered")]
    assert "version 1 is not registered (registered versions of 'shipment': v2)" in gone[0].reason

    renamed = list(check(sql_store, [ops_sagas.renamed]))
    assert sorted((p.saga_id, p.kind) for p in renamed) == [
        ("failed-undo", "step_missing"), ("waiting-at-charge", "step_missing")]
    assert "step 'charge'" in renamed[0].reason

    no_release = list(check(sql_store, [ops_sagas.no_release]))
    assert [(p.saga_id, p.kind, p.status) for p in no_release] == [
        ("failed-undo", "compensation_missing", SagaStatus.FAILED)]
    assert "a compensation of step 'reserve'" in no_release[0].reason


def test_a_worker_without_the_sagas_version_refuses_it_and_logs_why(
    sql_store: EventStore, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    _started(_coordinator(sql_store, clock), "flaky", "s-1")
    before = types(sql_store, "s-1")
    clock.advance(3600)
    newer = Coordinator(sql_store, [ops_sagas.only_v2], clock=clock, poll_interval=60.0)
    with caplog.at_level("ERROR", logger="saga"):
        newer.work(until_idle=True)
    assert types(sql_store, "s-1") == before
    assert sql_store.summary("s-1").lease_owner is None
    assert any("'shipment' version 1 is not registered" in r.getMessage() for r in caplog.records)

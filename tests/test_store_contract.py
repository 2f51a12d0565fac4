"""The event store contract: every backend keeps these promises (fixture ``store``)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from saga import (
    ConcurrencyError,
    EventStore,
    InvalidInput,
    LeaseHeld,
    PayloadTooLarge,
    SagaError,
    SagaNotFound,
    SagaStatus,
    StoredEvent,
)
from saga import events as ev
from saga._engine.reading import view as read_view

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _started(name: str = "order", input: object = None, at: float = 0.0) -> ev.SagaStarted:
    return ev.SagaStarted(name=name, version=1, input=input, at=_at(at))


def _attempt(step: str, attempt: int = 1, at: float = 0.0) -> ev.StepAttemptStarted:
    return ev.StepAttemptStarted(step=step, attempt=attempt, at=_at(at))


def _create(store: EventStore, saga_id: str, *, name: str = "order", at: float = 0.0,
            wake: float | None = 0.0, status: SagaStatus = SagaStatus.RUNNING) -> bool:
    return store.create(
        saga_id, [_started(name, at=at)], name=name, version=1, status=status,
        wake_at=None if wake is None else _at(wake), now=_at(at),
    )


def _append(store: EventStore, saga_id: str, expected: int, events: list[ev.Event], *,
            at: float = 0.0, wake: float | None = 0.0, status: SagaStatus = SagaStatus.RUNNING,
            owner: str | None = None, lease: float | None = None) -> None:
    store.append(
        saga_id, expected, events, status=status, wake_at=None if wake is None else _at(wake),
        now=_at(at), owner=owner, lease_until=None if lease is None else _at(lease),
    )


def test_create_append_load_and_history(store: EventStore) -> None:
    assert _create(store, "a")
    _append(store, "a", 1, [_attempt("x"), ev.StepSucceeded(step="x", attempt=1, result={"n": 1},
                                                             at=_at(1))])
    _append(store, "a", 3, [ev.SagaCompleted(at=_at(2))], status=SagaStatus.COMPLETED, wake=None)
    history = store.load("a")
    assert [e.seq for e in history] == [1, 2, 3, 4]
    assert [e.type for e in history] == [
        "SagaStarted", "StepAttemptStarted", "StepSucceeded", "SagaCompleted"
    ]
    assert all(isinstance(e, StoredEvent) and e.saga_id == "a" for e in history)
    assert history[2].data["result"] == {"n": 1}
    assert history[2].event == ev.StepSucceeded(step="x", attempt=1, result={"n": 1}, at=_at(1))
    assert store.load("a") == history
    # recorded_at comes from the database's clock, timezone-aware, in order.
    assert all(e.recorded_at.tzinfo is not None for e in history)
    assert [e.recorded_at for e in history] == sorted(e.recorded_at for e in history)
    assert abs(history[0].recorded_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert [e.to_json()["seq"] for e in history] == [1, 2, 3, 4]
    summary = store.summary("a")
    assert summary.status is SagaStatus.COMPLETED and summary.last_seq == 4
    assert summary.name == "order" and summary.version == 1 and summary.wake_at is None
    view = read_view(store, "a")
    assert view.status is SagaStatus.COMPLETED and view.results == {"x": {"n": 1}} and view.seq == 4


def test_create_is_idempotent_on_the_id(store: EventStore) -> None:
    assert _create(store, "a")
    assert not store.create("a", [_started("other", input=5)], name="other", version=1,
                            status=SagaStatus.RUNNING, wake_at=_at(0), now=_at(0))
    (only,) = store.load("a")
    assert only.data["name"] == "order" and store.summary("a").name == "order"


def test_seq_is_contiguous_per_saga(store: EventStore) -> None:
    _create(store, "a")
    _create(store, "b")
    for i in range(3):
        _append(store, "a", 1 + i, [_attempt("x", i + 1)])
    _append(store, "b", 1, [_attempt("y"), _attempt("y", 2)])
    assert [e.seq for e in store.load("a")] == [1, 2, 3, 4]
    assert [e.seq for e in store.load("b")] == [1, 2, 3]


def test_stale_expected_seq_is_a_concurrency_error_and_writes_nothing(store: EventStore) -> None:
    _create(store, "a")
    _append(store, "a", 1, [_attempt("x")])
    for stale in (0, 1, 3):
        with pytest.raises(ConcurrencyError) as info:
            _append(store, "a", stale, [_attempt("x", 2)])
        assert not isinstance(info.value, LeaseHeld)
    assert [e.seq for e in store.load("a")] == [1, 2]
    assert store.summary("a").last_seq == 2


def test_live_lease_of_another_owner_refuses_appends(store: EventStore) -> None:
    _create(store, "a")
    _append(store, "a", 1, [_attempt("x")], at=0, owner="w1", lease=10)
    summary = store.summary("a")
    assert summary.lease_owner == "w1" and summary.lease_expires_at == _at(10)
    with pytest.raises(LeaseHeld) as info:
        _append(store, "a", 2, [_attempt("x", 2)], at=5, owner="w2", lease=20)
    assert isinstance(info.value, ConcurrencyError) and "w1" in str(info.value)
    assert store.summary("a").last_seq == 2
    # The owner itself may go on, and release the lease.
    _append(store, "a", 2, [_attempt("x", 2)], at=5, owner="w1", lease=None)
    assert store.summary("a").lease_owner is None
    # An operator's append (no owner) ignores leases.
    _append(store, "a", 3, [_attempt("x", 3)], at=6, owner="w3", lease=100)
    _append(store, "a", 4, [ev.SagaCancelRequested(reason="stop", at=_at(7))], at=7)
    summary = store.summary("a")
    assert summary.last_seq == 5 and summary.lease_owner == "w3"


def test_lease_taken_over_after_it_expires(store: EventStore) -> None:
    _create(store, "a")
    _append(store, "a", 1, [_attempt("x")], at=0, owner="dead", lease=10)
    with pytest.raises(LeaseHeld):
        _append(store, "a", 2, [], at=9.5, owner="w2", lease=40)
    _append(store, "a", 2, [ev.StepSucceeded(step="x", attempt=1, at=_at(11))], at=11,
            owner="w2", lease=40)
    summary = store.summary("a")
    assert summary.lease_owner == "w2" and summary.lease_expires_at == _at(40)
    assert store.load("a")[-1].writer == "w2"


def test_renew_and_release(store: EventStore) -> None:
    _create(store, "a")
    _create(store, "b")
    _append(store, "a", 1, [], owner="w1", lease=10)
    _append(store, "b", 1, [], owner="w2", lease=10)
    assert store.renew("w1", ["a", "b"], until=_at(30)) == {"a"}
    assert store.summary("a").lease_expires_at == _at(30)
    assert store.summary("b").lease_expires_at == _at(10)
    store.release("w2", "a")  # not w2's: no-op
    assert store.summary("a").lease_owner == "w1"
    store.release("w1", "a")
    assert store.summary("a").lease_owner is None


def test_find_by_status_name_and_limit(store: EventStore) -> None:
    for i in range(3):
        _create(store, f"o{i}", name="order", at=i)
    _create(store, "p0", name="payment", at=3)
    _append(store, "o1", 1, [ev.SagaCompleted(at=_at(4))], at=4, status=SagaStatus.COMPLETED,
            wake=None)
    assert {s.saga_id for s in store.find()} == {"o0", "o1", "o2", "p0"}
    assert [s.saga_id for s in store.find(status=SagaStatus.COMPLETED)] == ["o1"]
    assert [s.saga_id for s in store.find(status="completed")] == ["o1"]
    assert {s.saga_id for s in store.find(status=SagaStatus.RUNNING, name="order")} == {"o0", "o2"}
    assert [s.saga_id for s in store.find(name="payment")] == ["p0"]
    assert store.find(status=SagaStatus.FAILED) == []
    # Most recently updated first.
    assert [s.saga_id for s in store.find(limit=2)] == ["o1", "p0"]
    with pytest.raises(SagaError):
        store.find(status="sleeping")
    with pytest.raises(SagaError):
        store.find(limit=0)


def test_due_and_next_wake(store: EventStore) -> None:
    _create(store, "now", wake=0)
    _create(store, "later", wake=60)
    _create(store, "leased", wake=0)
    _create(store, "done", wake=None, status=SagaStatus.COMPLETED)
    _create(store, "other", name="payment", wake=5)
    _append(store, "leased", 1, [], owner="w", lease=30, wake=0)
    assert store.due(_at(0)) == ["now"]
    assert store.due(_at(5)) == ["now", "other"]
    assert store.due(_at(5), names=["order"]) == ["now"]
    assert store.due(_at(5), limit=1) == ["now"]
    assert sorted(store.due(_at(31))) == ["leased", "now", "other"]
    assert sorted(store.due(_at(60))) == ["later", "leased", "now", "other"]
    assert store.next_wake() == _at(0)
    assert store.next_wake(names=["payment"]) == _at(5)
    assert store.next_wake(names=["nothing"]) is None
    # A leased saga wakes when its lease frees.
    _append(store, "now", 1, [ev.SagaCompleted(at=_at(1))], status=SagaStatus.COMPLETED, wake=None)
    assert store.next_wake(names=["order"]) == _at(30)


def test_a_wake_up_already_due_keeps_an_earlier_one(store: EventStore) -> None:
    _create(store, "s", wake=0)
    # due at 3 by 5: the saga was due from 0 already, and stays first in line from there
    _append(store, "s", 1, [_attempt("a", at=5)], at=5, wake=3, owner="w", lease=30)
    assert store.summary("s").wake_at == _at(0)
    # due only later than now: set
    _append(store, "s", 2, [ev.StepSucceeded(step="a", attempt=1, result=None, at=_at(6))],
            at=6, wake=60, owner="w")
    assert store.summary("s").wake_at == _at(60)
    # due now, after a wake-up in the future: set
    _append(store, "s", 3, [_attempt("b", at=7)], at=7, wake=7, owner="w", lease=30)
    assert store.summary("s").wake_at == _at(7)
    # not due: set
    _append(store, "s", 4, [ev.SagaCompleted(at=_at(8))], at=8, wake=None,
            status=SagaStatus.COMPLETED, owner="w")
    assert store.summary("s").wake_at is None
    assert [e.seq for e in store.load("s")] == [1, 2, 3, 4, 5]


def test_an_oversized_event_is_refused_and_nothing_is_written(store: EventStore) -> None:
    _create(store, "a")
    huge = ev.StepSucceeded(step="x", attempt=1, result="x" * (2 * 1024 * 1024), at=_at(1))
    with pytest.raises(PayloadTooLarge, match="StepSucceeded") as info:
        _append(store, "a", 1, [_attempt("x"), huge])
    assert isinstance(info.value, SagaError)
    assert store.summary("a").last_seq == 1 and len(store.load("a")) == 1
    with pytest.raises(PayloadTooLarge):
        store.create("b", [_started(input="y" * (2 * 1024 * 1024))], name="order", version=1,
                     status=SagaStatus.RUNNING, wake_at=_at(0), now=_at(0))
    with pytest.raises(SagaNotFound):
        store.summary("b")


def test_unknown_saga_id(store: EventStore) -> None:
    for call in (store.load, store.summary):
        with pytest.raises(SagaNotFound, match="nope"):
            call("nope")
    with pytest.raises(SagaNotFound):
        _append(store, "nope", 0, [_attempt("x")])
    assert store.find() == []


def test_claim_leases_due_sagas_once_and_returns_their_current_events(store: EventStore) -> None:
    _create(store, "a", wake=0)
    _create(store, "b", wake=0)
    _create(store, "later", wake=60)
    _create(store, "other", name="payment", wake=0)
    _append(store, "a", 1, [_attempt("reserve"), ev.StepAttemptFailed(
        step="reserve", attempt=1, error_type="E", message="m", retried=True,
        next_attempt_at=_at(0), at=_at(0),
    )], wake=0)
    claimed = store.claim_loaded("w1", _at(0), until=_at(30), names=["order"], limit=10)
    assert sorted(sid for sid, _ in claimed) == ["a", "b"]
    reads_with_claim = type(store).__name__ == "PostgresEventStore"
    for sid, events in claimed:
        assert (events is not None) == reads_with_claim  # SQLite leaves loading to the caller
        if events is not None:
            assert [(e.seq, e.type, e.data) for e in events] == [
                (e.seq, e.type, e.data) for e in store.load(sid)
            ]
    assert store.summary("a").lease_owner == "w1"
    # Leased: no one else claims them until the lease expires.
    assert store.claim("w2", _at(1), until=_at(31), names=["order"]) == []
    assert store.claim("w2", _at(31), until=_at(61), names=["order"], exclude=["b"]) == ["a"]
    assert store.summary("a").lease_owner == "w2"


def test_load_pages_by_seq(store: EventStore) -> None:
    assert _create(store, "a")
    _append(store, "a", 1, [_attempt("x", n) for n in range(1, 5)])
    assert [e.seq for e in store.load("a", after=2, limit=2)] == [3, 4]
    assert [e.seq for e in store.load("a", after=3)] == [4, 5]
    assert [e.seq for e in store.load("a", limit=1)] == [1]
    assert store.load("a", after=5) == []  # past the end of an existing log: an empty page
    pages: list[int] = []
    after = 0
    while page := store.load("a", after=after, limit=2):
        pages.append(len(page))
        after = page[-1].seq
    assert pages == [2, 2, 1]
    with pytest.raises(SagaNotFound):
        store.load("nope", after=3, limit=1)
    for bad in ({"after": -1}, {"limit": 0}, {"after": True}, {"limit": 1.5}):
        with pytest.raises(InvalidInput):
            store.load("a", **bad)


def test_claims_from_many_threads_never_share_a_saga(store_url: str) -> None:
    with EventStore(store_url) as store:
        assert isinstance(store, EventStore)
        ids = [f"s{i}" for i in range(40)]
        for i in ids:
            _create(store, i)
        taken: dict[str, list[str]] = {}

        def claimer(owner: str) -> None:
            mine = taken.setdefault(owner, [])
            while got := store.claim(owner, _at(1), until=_at(60), limit=3):
                mine.extend(got)

        threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        claimed = [i for got in taken.values() for i in got]
        assert sorted(claimed) == sorted(ids)  # every saga claimed, none twice
        assert {store.summary(i).lease_owner for i in ids} <= set(taken)


def test_each_memory_store_is_a_log_of_its_own() -> None:
    first, second = EventStore("memory://"), EventStore("memory://")
    assert _create(first, "a")
    with pytest.raises(SagaNotFound):
        second.load("a")
    assert _create(second, "a")  # the same id is free in the other log
    with pytest.raises(InvalidInput):
        EventStore("memory://somewhere")

"""The write side of the store contract: creating and appending with the ``seq`` and lease fence,
leases and claims, what is due and when, reading a saga's log in pages (part of
:class:`saga.testing.contract.EventLogContract`)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from saga import events as ev
from saga.errors import ConcurrencyError, InvalidInput, LeaseHeld, PayloadTooLarge, SagaError, SagaNotFound
from saga.state import SagaStatus
from saga.store.base import EventLog, StoredEvent

__all__ = ["T0", "WriteSideContract", "append", "at", "attempt", "create", "started"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
"""The time the contract's sagas start from (``at(0)``)."""


def at(seconds: float) -> datetime:
    """``seconds`` after :data:`T0`."""
    return T0 + timedelta(seconds=seconds)


def started(name: str = "order", input: object = None, when: float = 0.0) -> ev.SagaStarted:
    """A ``SagaStarted`` of saga ``name`` at ``at(when)``."""
    return ev.SagaStarted(name=name, version=1, input=input, at=at(when))


def attempt(step: str, n: int = 1, when: float = 0.0) -> ev.StepAttemptStarted:
    """The start of attempt ``n`` of ``step`` at ``at(when)``."""
    return ev.StepAttemptStarted(step=step, attempt=n, at=at(when))


def create(store: EventLog, saga_id: str, *, name: str = "order", when: float = 0.0,
           wake: float | None = 0.0, status: SagaStatus = SagaStatus.RUNNING,
           events: list[ev.Event] | None = None) -> bool:
    """Create ``saga_id`` at ``at(when)`` with ``events`` (default: its ``SagaStarted``)."""
    return store.create(
        saga_id, events if events is not None else [started(name, when=when)], name=name,
        version=1, status=status, wake_at=None if wake is None else at(wake), now=at(when),
    )


def append(store: EventLog, saga_id: str, expected: int, events: list[ev.Event], *,
           when: float = 0.0, wake: float | None = 0.0, status: SagaStatus = SagaStatus.RUNNING,
           owner: str | None = None, lease: float | None = None) -> None:
    """Append ``events`` to ``saga_id`` after ``expected``, at ``at(when)``."""
    store.append(
        saga_id, expected, events, status=status, wake_at=None if wake is None else at(wake),
        now=at(when), owner=owner, lease_until=None if lease is None else at(lease),
    )


class WriteSideContract:
    """What every store promises about writing a saga's log and finding work (fixture ``store``)."""

    def test_create_append_load(self, store: EventLog) -> None:
        assert create(store, "a")
        append(store, "a", 1, [attempt("x"), ev.StepSucceeded(step="x", attempt=1, result={"n": 1},
                                                               at=at(1))])
        append(store, "a", 3, [ev.SagaCompleted(at=at(2))], when=2, status=SagaStatus.COMPLETED,
               wake=None)
        history = store.load("a")
        assert [e.seq for e in history] == [1, 2, 3, 4]
        assert [e.type for e in history] == [
            "SagaStarted", "StepAttemptStarted", "StepSucceeded", "SagaCompleted"
        ]
        assert all(isinstance(e, StoredEvent) and e.saga_id == "a" for e in history)
        assert history[2].data["result"] == {"n": 1}
        assert history[2].event == ev.StepSucceeded(step="x", attempt=1, result={"n": 1}, at=at(1))
        assert store.load("a") == history
        # recorded_at is the store's clock, timezone-aware, in order.
        assert all(e.recorded_at.tzinfo is not None for e in history)
        assert [e.recorded_at for e in history] == sorted(e.recorded_at for e in history)
        assert abs(history[0].recorded_at - datetime.now(UTC)) < timedelta(minutes=5)
        summary = store.summary("a")
        assert summary.status is SagaStatus.COMPLETED and summary.last_seq == 4
        assert summary.name == "order" and summary.version == 1 and summary.wake_at is None
        assert summary.created_at == at(0) and summary.updated_at == at(2)

    def test_create_is_idempotent_on_the_id(self, store: EventLog) -> None:
        assert create(store, "a")
        assert not store.create("a", [started("other", input=5)], name="other", version=1,
                                status=SagaStatus.RUNNING, wake_at=at(0), now=at(0))
        (only,) = store.load("a")
        assert only.data["name"] == "order" and store.summary("a").name == "order"

    def test_seq_is_contiguous_per_saga(self, store: EventLog) -> None:
        create(store, "a")
        create(store, "b")
        for i in range(3):
            append(store, "a", 1 + i, [attempt("x", i + 1)])
        append(store, "b", 1, [attempt("y"), attempt("y", 2)])
        assert [e.seq for e in store.load("a")] == [1, 2, 3, 4]
        assert [e.seq for e in store.load("b")] == [1, 2, 3]

    def test_a_stale_expected_seq_is_a_concurrency_error_and_writes_nothing(
        self, store: EventLog
    ) -> None:
        create(store, "a")
        append(store, "a", 1, [attempt("x")])
        for stale in (0, 1, 3):
            with pytest.raises(ConcurrencyError) as info:
                append(store, "a", stale, [attempt("x", 2)])
            assert not isinstance(info.value, LeaseHeld)
        assert [e.seq for e in store.load("a")] == [1, 2]
        assert store.summary("a").last_seq == 2

    def test_a_live_lease_of_another_owner_refuses_appends(self, store: EventLog) -> None:
        create(store, "a")
        append(store, "a", 1, [attempt("x")], when=0, owner="w1", lease=10)
        summary = store.summary("a")
        assert summary.lease_owner == "w1" and summary.lease_expires_at == at(10)
        with pytest.raises(LeaseHeld) as info:
            append(store, "a", 2, [attempt("x", 2)], when=5, owner="w2", lease=20)
        assert isinstance(info.value, ConcurrencyError) and "w1" in str(info.value)
        assert store.summary("a").last_seq == 2
        # The owner itself may go on, and release the lease.
        append(store, "a", 2, [attempt("x", 2)], when=5, owner="w1", lease=None)
        assert store.summary("a").lease_owner is None
        # An operator's append (no owner) ignores leases.
        append(store, "a", 3, [attempt("x", 3)], when=6, owner="w3", lease=100)
        append(store, "a", 4, [ev.SagaCancelRequested(reason="stop", at=at(7))], when=7)
        summary = store.summary("a")
        assert summary.last_seq == 5 and summary.lease_owner == "w3"

    def test_a_lease_is_taken_over_after_it_expires(self, store: EventLog) -> None:
        create(store, "a")
        append(store, "a", 1, [attempt("x")], when=0, owner="dead", lease=10)
        with pytest.raises(LeaseHeld):
            append(store, "a", 2, [], when=9.5, owner="w2", lease=40)
        append(store, "a", 2, [ev.StepSucceeded(step="x", attempt=1, at=at(11))], when=11,
               owner="w2", lease=40)
        summary = store.summary("a")
        assert summary.lease_owner == "w2" and summary.lease_expires_at == at(40)
        assert store.load("a")[-1].writer == "w2"

    def test_renew_and_release(self, store: EventLog) -> None:
        create(store, "a")
        create(store, "b")
        append(store, "a", 1, [], owner="w1", lease=10)
        append(store, "b", 1, [], owner="w2", lease=10)
        assert store.renew("w1", ["a", "b"], until=at(30)) == {"a"}
        assert store.summary("a").lease_expires_at == at(30)
        assert store.summary("b").lease_expires_at == at(10)
        store.release("w2", "a")  # not w2's: no-op
        assert store.summary("a").lease_owner == "w1"
        store.release("w1", "a")
        assert store.summary("a").lease_owner is None

    def test_find_by_status_name_and_limit(self, store: EventLog) -> None:
        for i in range(3):
            create(store, f"o{i}", name="order", when=i)
        create(store, "p0", name="payment", when=3)
        append(store, "o1", 1, [ev.SagaCompleted(at=at(4))], when=4, status=SagaStatus.COMPLETED,
               wake=None)
        assert {s.saga_id for s in store.find()} == {"o0", "o1", "o2", "p0"}
        assert [s.saga_id for s in store.find(status=SagaStatus.COMPLETED)] == ["o1"]
        assert [s.saga_id for s in store.find(status="completed")] == ["o1"]
        assert {s.saga_id for s in store.find(status=SagaStatus.RUNNING, name="order")} == {"o0", "o2"}
        assert [s.saga_id for s in store.find(name="payment")] == ["p0"]
        assert store.find(status=SagaStatus.FAILED) == []
        assert [s.saga_id for s in store.find(limit=2)] == ["o1", "p0"]  # last updated first
        with pytest.raises(SagaError):
            store.find(status="sleeping")
        with pytest.raises(SagaError):
            store.find(limit=0)

    def test_due_and_next_wake(self, store: EventLog) -> None:
        create(store, "now", wake=0)
        create(store, "later", wake=60)
        create(store, "leased", wake=0)
        create(store, "done", wake=None, status=SagaStatus.COMPLETED)
        create(store, "other", name="payment", wake=5)
        append(store, "leased", 1, [], owner="w", lease=30, wake=0)
        assert store.due(at(0)) == ["now"]
        assert store.due(at(5)) == ["now", "other"]
        assert store.due(at(5), names=["order"]) == ["now"]
        assert store.due(at(5), limit=1) == ["now"]
        assert sorted(store.due(at(31))) == ["leased", "now", "other"]
        assert sorted(store.due(at(60))) == ["later", "leased", "now", "other"]
        assert store.next_wake() == at(0)
        assert store.next_wake(names=["payment"]) == at(5)
        assert store.next_wake(names=["nothing"]) is None
        # A leased saga wakes when its lease frees.
        append(store, "now", 1, [ev.SagaCompleted(at=at(1))], status=SagaStatus.COMPLETED, wake=None)
        assert store.next_wake(names=["order"]) == at(30)

    def test_a_wake_up_already_due_keeps_an_earlier_one(self, store: EventLog) -> None:
        create(store, "s", wake=0)
        # due at 3 by 5: the saga was due from 0 already, and stays first in line from there
        append(store, "s", 1, [attempt("a", when=5)], when=5, wake=3, owner="w", lease=30)
        assert store.summary("s").wake_at == at(0)
        # due only later than now: set
        append(store, "s", 2, [ev.StepSucceeded(step="a", attempt=1, result=None, at=at(6))],
               when=6, wake=60, owner="w")
        assert store.summary("s").wake_at == at(60)
        # due now, after a wake-up in the future: set
        append(store, "s", 3, [attempt("b", when=7)], when=7, wake=7, owner="w", lease=30)
        assert store.summary("s").wake_at == at(7)
        # not due: set
        append(store, "s", 4, [ev.SagaCompleted(at=at(8))], when=8, wake=None,
               status=SagaStatus.COMPLETED, owner="w")
        assert store.summary("s").wake_at is None
        assert [e.seq for e in store.load("s")] == [1, 2, 3, 4, 5]

    def test_an_oversized_event_is_refused_and_nothing_is_written(self, store: EventLog) -> None:
        limit = getattr(store, "max_payload", None)
        if not isinstance(limit, int):
            pytest.skip("the store bounds no payload (it has no max_payload)")
        create(store, "a")
        huge = ev.StepSucceeded(step="x", attempt=1, result="x" * limit, at=at(1))
        with pytest.raises(PayloadTooLarge, match="StepSucceeded") as info:
            append(store, "a", 1, [attempt("x"), huge])
        assert isinstance(info.value, SagaError)
        assert store.summary("a").last_seq == 1 and len(store.load("a")) == 1
        with pytest.raises(PayloadTooLarge):
            store.create("b", [started(input="y" * limit)], name="order", version=1,
                         status=SagaStatus.RUNNING, wake_at=at(0), now=at(0))
        with pytest.raises(SagaNotFound):
            store.summary("b")

    def test_an_unknown_saga_id(self, store: EventLog) -> None:
        for call in (store.load, store.summary):
            with pytest.raises(SagaNotFound, match="nope"):
                call("nope")
        with pytest.raises(SagaNotFound):
            append(store, "nope", 0, [attempt("x")])
        assert store.find() == []

    def test_claim_leases_due_sagas_once(self, store: EventLog) -> None:
        create(store, "a", wake=0)
        create(store, "b", wake=0)
        create(store, "later", wake=60)
        create(store, "other", name="payment", wake=0)
        append(store, "a", 1, [attempt("reserve"), ev.StepAttemptFailed(
            step="reserve", attempt=1, error_type="E", message="m", retried=True,
            next_attempt_at=at(0), at=at(0),
        )], wake=0)
        claimed = store.claim_loaded("w1", at(0), until=at(30), names=["order"], limit=10)
        assert sorted(sid for sid, _ in claimed) == ["a", "b"]
        for sid, events in claimed:  # events read with the claim are the saga's current ones
            if events is not None:
                assert [(e.seq, e.type, e.data) for e in events] == [
                    (e.seq, e.type, e.data) for e in store.load(sid)
                ]
        assert store.summary("a").lease_owner == "w1"
        # Leased: no one else claims them until the lease expires.
        assert store.claim("w2", at(1), until=at(31), names=["order"]) == []
        assert store.claim("w2", at(31), until=at(61), names=["order"], exclude=["b"]) == ["a"]
        assert store.summary("a").lease_owner == "w2"

    def test_load_pages_by_seq(self, store: EventLog) -> None:
        assert create(store, "a")
        append(store, "a", 1, [attempt("x", n) for n in range(1, 5)])
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

    def test_claims_from_many_threads_never_share_a_saga(self, store: EventLog) -> None:
        ids = [f"s{i}" for i in range(40)]
        for i in ids:
            create(store, i)
        taken: dict[str, list[str]] = {}

        def claimer(owner: str) -> None:
            mine = taken.setdefault(owner, [])
            while got := store.claim(owner, at(1), until=at(60), limit=3):
                mine.extend(got)

        threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        claimed = [i for got in taken.values() for i in got]
        assert sorted(claimed) == sorted(ids)  # every saga claimed, none twice
        assert {store.summary(i).lease_owner for i in ids} <= set(taken)

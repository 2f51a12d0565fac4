"""The read side of the store contract: the list of sagas, statistics, export, verification and
heads, over one small log with every kind of outcome (part of
:class:`saga.testing.contract.EventLogContract`)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from saga import events as ev
from saga.errors import InvalidInput, SagaNotFound
from saga.state import SagaStatus
from saga.store.audit import Head, HeadBuilder
from saga.store.base import EventLog
from saga.store.hashing import stored_event_hash, stored_text
from saga.store.reads import MAX_LIMIT, SagaCounts, Stats, StepStats
from saga.testing.contract_write import append, at, attempt, create, started

__all__ = ["EVENTS", "ReadSideContract", "write_log"]

EVENTS = {"a": 8, "b": 12, "c": 2, "d": 5, "e": 2}
"""The sagas :func:`write_log` writes and how many events each has."""


def _failed(step: str, n: int, when: float, error: str, *, compensation: bool = False,
            timed_out: bool = False, lost: bool = False, retried: bool = True) -> ev.Event:
    kind = ev.CompensationAttemptFailed if compensation else ev.StepAttemptFailed
    return kind(step=step, attempt=n, error_type=error, message=f"{error}!", timed_out=timed_out,
                lost=lost, retried=retried, at=at(when))


def write_log(store: EventLog) -> None:
    """Five sagas, started at 0, 10, 30, 40 and 50 s after :data:`~.contract_write.T0`:

    - ``a`` (order): ``reserve`` succeeds in 2 s; ``charge`` times out after 3 s
      (``Timeout``), then succeeds in 1 s; completed.
    - ``b`` (order): ``reserve`` fails in 1 s (``ValueError``), then is lost with its
      worker (``WorkerLost``) and fails for good; its compensation fails once
      (``ValueError``), then succeeds; compensated.
    - ``c`` (payment): ``pay`` is running.
    - ``d`` (payment): ``pay`` fails in 1 s (``Declined``) for good; failed.
    - ``e`` (order): parked, with no attempt.

    ``e`` is written first: the order of appends is not the order of ids.
    """
    create(store, "e", when=50)
    append(store, "e", 1, [ev.SagaParked(reason="cannot read", error_type="E", at=at(50))],
           when=50, wake=60)

    create(store, "a", when=0, events=[started(when=0), attempt("reserve", when=0)])
    append(store, "a", 2, [ev.StepSucceeded(step="reserve", attempt=1, at=at(2)),
                           attempt("charge", when=2)], when=2)
    append(store, "a", 4, [_failed("charge", 1, 5, "Timeout", timed_out=True)], when=5)
    append(store, "a", 5, [attempt("charge", 2, when=6)], when=6)
    append(store, "a", 6, [ev.StepSucceeded(step="charge", attempt=2, at=at(7)),
                           ev.SagaCompleted(at=at(7))], when=7, wake=None,
           status=SagaStatus.COMPLETED)

    create(store, "b", when=10, events=[started(when=10), attempt("reserve", when=10)])
    append(store, "b", 2, [_failed("reserve", 1, 11, "ValueError"), attempt("reserve", 2, when=12)],
           when=12)
    append(store, "b", 4, [
        _failed("reserve", 2, 20, "WorkerLost", lost=True, retried=False),
        ev.StepFailed(step="reserve", reason="lost", at=at(20)),
        ev.CompensationStarted(reason="lost", step="reserve", at=at(20)),
        ev.CompensationAttemptStarted(step="reserve", attempt=1, at=at(21)),
    ], when=21, status=SagaStatus.COMPENSATING)
    append(store, "b", 8, [
        _failed("reserve", 1, 22, "ValueError", compensation=True),
        ev.CompensationAttemptStarted(step="reserve", attempt=2, at=at(23)),
    ], when=23, status=SagaStatus.COMPENSATING)
    append(store, "b", 10, [ev.StepCompensated(step="reserve", attempt=2, at=at(24)),
                            ev.SagaCompensated(at=at(24))], when=24, wake=None,
           status=SagaStatus.COMPENSATED)

    create(store, "c", name="payment", when=30,
           events=[started("payment", when=30), attempt("pay", when=30)])

    create(store, "d", name="payment", when=40,
           events=[started("payment", when=40), attempt("pay", when=40)])
    append(store, "d", 2, [_failed("pay", 1, 41, "Declined", retried=False),
                           ev.StepFailed(step="pay", reason="declined", at=at(41)),
                           ev.SagaFailed(step="pay", reason="declined", at=at(41))],
           when=41, wake=None, status=SagaStatus.FAILED)



def _ids(store: EventLog, **filters: object) -> list[str]:
    return [r.saga_id for r in store.list_sagas(limit=100, **filters).rows]  # type: ignore[arg-type]


class ReadSideContract:
    """What every store answers about its whole log (fixture ``store``)."""

    def test_list_sagas_newest_first_by_every_filter(self, store: EventLog) -> None:
        write_log(store)
        assert _ids(store) == ["e", "d", "c", "b", "a"]
        assert _ids(store, status="running") == ["e", "c"]
        assert _ids(store, status="compensated") == ["b"]
        assert _ids(store, name="order") == ["e", "b", "a"]
        assert _ids(store, failed_step="reserve") == ["b"]
        assert _ids(store, failed_step="pay") == ["d"]
        assert _ids(store, error_type="ValueError") == ["b"]  # forward and compensation
        assert _ids(store, error_type="Timeout") == ["a"]
        assert _ids(store, error_type="WorkerLost") == ["b"]
        assert _ids(store, error_type="Nothing") == []
        assert _ids(store, since=at(10)) == ["e", "d", "c", "b"]  # started at or after
        assert _ids(store, until=at(40)) == ["c", "b", "a"]  # started before
        assert _ids(store, name="payment", since=at(10), until=at(40)) == ["c"]
        assert _ids(store, status="compensated", failed_step="reserve", error_type="ValueError",
                    name="order") == ["b"]
        rows = {r.saga_id: r for r in store.list_sagas().rows}
        assert rows["b"].to_json() == {
            "id": "b", "name": "order", "status": "compensated", "started_at": at(10).isoformat(),
            "updated_at": at(24).isoformat(), "failed_step": "reserve", "parked": None,
        }
        assert rows["a"].version == 1 and rows["a"].failed_step is None
        assert rows["e"].parked == "cannot read" and rows["d"].parked is None

    def test_list_sagas_pages_with_a_cursor(self, store: EventLog) -> None:
        write_log(store)
        first = store.list_sagas(limit=2)
        assert [r.saga_id for r in first.rows] == ["e", "d"] and first.cursor is not None
        create(store, "f", when=60)  # started since: the next page goes on after "d" all the same
        second = store.list_sagas(limit=2, cursor=first.cursor)
        assert [r.saga_id for r in second.rows] == ["c", "b"] and second.cursor is not None
        last = store.list_sagas(limit=2, cursor=second.cursor)
        assert [r.saga_id for r in last.rows] == ["a"] and last.cursor is None
        only = store.list_sagas(limit=2, name="payment")
        assert [r.saga_id for r in only.rows] == ["d", "c"] and only.cursor is None
        for bad in ({"status": "sleeping"}, {"limit": 0}, {"limit": MAX_LIMIT + 1},
                    {"limit": True}, {"cursor": "nonsense!"}):
            with pytest.raises(InvalidInput):
                store.list_sagas(**bad)

    def test_stats_count_sagas_attempts_durations_and_errors(self, store: EventLog) -> None:
        write_log(store)
        stats = store.stats()
        assert stats.sagas == {"order": SagaCounts(completed=1, compensated=1, running=1),
                               "payment": SagaCounts(failed=1, running=1)}
        assert list(stats.steps) == ["order/charge", "order/reserve", "payment/pay"]
        _same(stats.steps["order/reserve"], StepStats(3, 1, 1, 0, 1, 1.0, 2.0, 2.0))
        _same(stats.steps["order/charge"], StepStats(2, 1, 0, 1, 0, 1.0, 3.0, 3.0))
        _same(stats.steps["payment/pay"], StepStats(2, 0, 1, 0, 0, 1.0, 1.0, 1.0))
        assert stats.steps["order/reserve"].attempts_per_success == 3.0
        assert stats.steps["payment/pay"].attempts_per_success is None
        assert stats.top_errors == [("ValueError", 2), ("Declined", 1), ("Timeout", 1),
                                    ("WorkerLost", 1)]
        assert store.stats(top=2).top_errors == [("ValueError", 2), ("Declined", 1)]

    def test_stats_by_name_and_since(self, store: EventLog) -> None:
        write_log(store)
        payment = store.stats(name="payment")
        assert payment.sagas == {"payment": SagaCounts(failed=1, running=1)}
        assert list(payment.steps) == ["payment/pay"] and payment.top_errors == [("Declined", 1)]
        later = store.stats(since=at(10))  # sagas and attempts started at or after
        assert later.sagas == {"order": SagaCounts(compensated=1, running=1),
                               "payment": SagaCounts(failed=1, running=1)}
        assert list(later.steps) == ["order/reserve", "payment/pay"]
        _same(later.steps["order/reserve"], StepStats(2, 0, 1, 0, 1, 1.0, 1.0, 1.0))
        assert later.top_errors == [("ValueError", 2), ("Declined", 1), ("WorkerLost", 1)]
        assert store.stats(name="nope") == Stats({}, {}, [])
        assert store.stats(since=at(1000)).to_json() == {"sagas": {}, "steps": {}, "top_errors": []}

    def test_export_gives_every_event_in_the_order_appended(self, store: EventLog) -> None:
        write_log(store)
        logs = {saga_id: store.load(saga_id) for saga_id in EVENTS}
        rows = list(store.export())
        assert len(rows) == sum(EVENTS.values())
        by_key = {(e.saga_id, e.seq): e for log in logs.values() for e in log}
        for r in rows:
            e = by_key[r.saga_id, r.seq]
            assert (r.type, r.data, r.hash, r.recorded_at) == (e.type, e.data, e.hash, e.recorded_at)
        for saga_id, n in EVENTS.items():  # each saga's events in seq order
            assert [r.seq for r in rows if r.saga_id == saga_id] == list(range(1, n + 1))
        assert (rows[0].saga_id, rows[0].seq) == ("e", 1)  # the first event appended
        positions = [by_key[r.saga_id, r.seq].position for r in rows]
        if None not in positions:
            assert positions == sorted(positions)  # type: ignore[type-var]
        # events recorded later than a time: only those
        last = max(r.recorded_at for r in rows)
        time.sleep(0.02)
        create(store, "f", when=60)
        append(store, "c", 2, [ev.StepSucceeded(step="pay", attempt=1, at=at(31))], when=31)
        later = [(r.saga_id, r.seq) for r in store.export(since=last + timedelta(milliseconds=5))]
        assert later == [("f", 1), ("c", 3)]  # in the order appended
        assert len(list(store.export(since=min(r.recorded_at for r in rows) - timedelta(seconds=1),
                                     batch=3))) == len(rows) + 2
        assert rows[0].to_json() == {"saga_id": rows[0].saga_id, "seq": rows[0].seq,
                                     "type": rows[0].type, "data": rows[0].data,
                                     "recorded_at": rows[0].recorded_at.isoformat(),
                                     "hash": rows[0].hash}

    def test_each_event_is_chained_to_the_previous_one_of_its_saga(self, store: EventLog) -> None:
        write_log(store)
        for saga_id in EVENTS:
            previous = None
            for e in store.load(saga_id):
                previous = stored_event_hash(saga_id, e.seq, e.type, e.schema_version,
                                             stored_text(e.data), previous,
                                             e.recorded_at.timestamp())
                assert e.hash == previous, (saga_id, e.seq)

    def test_verify_checks_every_chain(self, store: EventLog) -> None:
        write_log(store)
        report = store.verify()
        assert report.ok and report.problem is None, report.summary()
        assert (report.sagas, report.events) == (len(EVENTS), sum(EVENTS.values()))
        assert report.lines() == [f"ok: {len(EVENTS)} sagas, {sum(EVENTS.values())} events verified"]
        assert report.head == store.head()
        one = store.verify("b")
        assert one.ok and (one.sagas, one.events) == (1, EVENTS["b"])
        with pytest.raises(SagaNotFound, match="nope"):
            store.verify("nope")

    def test_a_head_covers_each_sagas_last_event_and_holds_as_the_log_grows(
        self, store: EventLog
    ) -> None:
        write_log(store)
        head = store.head()
        assert isinstance(head, Head) and Head.parse(str(head)) == head
        assert (head.sagas, head.events) == (len(EVENTS), sum(EVENTS.values()))
        expected = HeadBuilder()
        for saga_id in sorted(EVENTS):
            last = store.load(saga_id)[-1]
            expected.add(saga_id, last.seq, last.hash)
        assert head.digest == expected.head(head.position).digest
        positions = [e.position for saga_id in EVENTS for e in store.load(saga_id)]
        if None not in positions:
            assert head.position == max(positions)  # type: ignore[type-var]
        append(store, "c", 2, [ev.StepSucceeded(step="pay", attempt=1, at=at(31))], when=31)
        create(store, "f", when=60)
        assert store.verify(head=head).ok and store.verify(head=str(head)).ok
        grown = store.head()
        assert (grown.sagas, grown.events) == (head.sagas + 1, head.events + 2) and grown != head
        for bad in ("abc", "0" * 64):
            with pytest.raises(InvalidInput):
                store.verify(head=bad)
        with pytest.raises(InvalidInput, match="covers the whole log"):
            store.verify("a", head=str(head))

    def test_status_counts(self, store: EventLog) -> None:
        write_log(store)
        assert store.status_counts() == {
            ("order", SagaStatus.COMPLETED): 1, ("order", SagaStatus.COMPENSATED): 1,
            ("order", SagaStatus.RUNNING): 1, ("payment", SagaStatus.RUNNING): 1,
            ("payment", SagaStatus.FAILED): 1,
        }

    def test_an_empty_log(self, store: EventLog) -> None:
        assert store.list_sagas().rows == [] and store.list_sagas().cursor is None
        assert store.stats() == Stats({}, {}, [])
        assert list(store.export()) == []
        report = store.verify()
        assert report.ok and (report.sagas, report.events) == (0, 0)
        assert (store.head().sagas, store.head().events) == (0, 0)
        assert store.status_counts() == {}


def _same(got: StepStats, want: StepStats) -> None:
    """Equal counts, and durations equal to a microsecond (a database subtracts floats)."""
    assert (got.attempts, got.successes, got.failures, got.timeouts, got.lost) == (
        want.attempts, want.successes, want.failures, want.timeouts, want.lost), got
    for ours, theirs in ((got.p50, want.p50), (got.p95, want.p95), (got.p99, want.p99)):
        assert ours == pytest.approx(theirs, abs=1e-6), got

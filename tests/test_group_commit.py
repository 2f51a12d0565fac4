"""Group commit on PostgreSQL: appends of many sagas share a transaction, each keeps its own fence."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from saga import ConcurrencyError, Coordinator, EventStore, LeaseHeld, Saga, SagaStatus
from saga import events as ev
from saga._engine.reading import view as read_view
from saga.store.postgres import PostgresEventStore

pytestmark = pytest.mark.postgres

NOW = datetime(2030, 1, 1, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=30)


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[PostgresEventStore]:
    s = EventStore(postgres_url)
    assert isinstance(s, PostgresEventStore)
    yield s
    s.close()


def _create(store: EventStore, saga_id: str, *, owner: str) -> None:
    assert store.create(
        saga_id, [ev.SagaStarted(name="g", version=1, at=NOW)], name="g", version=1,
        status=SagaStatus.RUNNING, wake_at=NOW, now=NOW, owner=owner, lease_until=LEASE,
    )


def _append(store: EventStore, saga_id: str, expected: int, owner: str) -> Callable[[], None]:
    def go() -> None:
        store.append(
            saga_id, expected, [ev.StepAttemptStarted(step="a", attempt=1, at=NOW)],
            status=SagaStatus.RUNNING, wake_at=NOW, now=NOW, owner=owner, lease_until=LEASE,
        )
    return go


def test_a_refused_append_does_not_fail_the_others_in_its_batch(
    pg_store: PostgresEventStore, postgres_url: str
) -> None:
    for sid in ("blocker", "good-1", "stale", "good-2", "leased"):
        _create(pg_store, sid, owner="me")
    _create(pg_store, "theirs", owner="them")
    libpq = sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(
        hide_password=False
    )
    outcomes: dict[str, BaseException | None] = {}

    def run(name: str, fn: Callable[[], None]) -> threading.Thread:
        def target() -> None:
            try:
                fn()
                outcomes[name] = None
            except BaseException as e:
                outcomes[name] = e
        t = threading.Thread(target=target)
        t.start()
        return t

    # Hold the first append's row lock from outside, so that the next appends queue up
    # behind its commit and go into one batch together.
    with psycopg.connect(libpq) as holder:
        holder.execute("SELECT 1 FROM sagas WHERE saga_id = 'blocker' FOR UPDATE")
        first = run("blocker", _append(pg_store, "blocker", 1, "me"))
        time.sleep(0.3)
        threads = [
            run("good-1", _append(pg_store, "good-1", 1, "me")),
            run("stale", _append(pg_store, "stale", 0, "me")),       # the log is at seq 1
            run("good-2", _append(pg_store, "good-2", 1, "me")),
            run("theirs", _append(pg_store, "theirs", 1, "me")),     # another owner's live lease
        ]
        time.sleep(0.3)
        assert not outcomes  # all waiting: the first holds the commit, the rest are queued
        holder.rollback()
    for t in (first, *threads):
        t.join(10)
    assert outcomes["blocker"] is None
    assert outcomes["good-1"] is None and outcomes["good-2"] is None
    assert isinstance(outcomes["stale"], ConcurrencyError)
    assert not isinstance(outcomes["stale"], LeaseHeld)
    assert isinstance(outcomes["theirs"], LeaseHeld)
    for sid, seqs in {"blocker": [1, 2], "good-1": [1, 2], "good-2": [1, 2], "stale": [1],
                      "theirs": [1]}.items():
        assert [e.seq for e in pg_store.load(sid)] == seqs
    assert pg_store.summary("good-1").lease_owner == "me"
    assert pg_store.summary("theirs").lease_owner == "them"


def _transactions_after_start(libpq: str) -> int:
    """How many transactions wrote the events after each saga's first (by their ``xmin``)."""
    with psycopg.connect(libpq, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT xmin::text) FROM saga_events WHERE seq > 1"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_worker_driving_many_sagas_commits_less_than_once_per_append(
    pg_store: PostgresEventStore, postgres_url: str
) -> None:
    saga = Saga("grouped")
    for n in range(3):
        saga.step(name=f"s{n}", timeout=10.0)(lambda ctx: {"n": ctx.attempt})

    coordinator = Coordinator(pg_store, sagas=[saga], poll_interval=0.05)
    ids = [coordinator.start("grouped", None, saga_id=f"g{i}") for i in range(120)]
    libpq = sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(
        hide_password=False
    )
    coordinator.work(until_idle=True, concurrency=24)
    assert all(read_view(pg_store, sid).status is SagaStatus.COMPLETED for sid in ids)
    assert all(len(pg_store.load(sid)) == 8 for sid in ids)
    appends = 4 * len(ids)  # the first start, two handovers and the finish of each saga
    commits = _transactions_after_start(libpq)
    assert commits < appends / 2, (commits, appends)


def test_the_batch_statement_finds_sagas_by_primary_key_in_a_large_table(
    pg_store: PostgresEventStore,
) -> None:
    from saga.store.postgres.statements import BATCH_APPEND

    with pg_store.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO sagas (saga_id, name, version, status, last_seq, created_at, updated_at)"
            " SELECT 'bulk-' || i, 'g', 1, 'completed', 3, 0, 0 FROM generate_series(1, 20000) i"
        )
        conn.exec_driver_sql("ANALYZE sagas")
        plan = conn.execute(
            sa.text("EXPLAIN " + BATCH_APPEND.text),
            {"sagas": '[{"saga_id": "bulk-7", "expected": 3}]', "events": "[]", "starts": "[]", "ends": "[]",
             "ids": ["bulk-7"]},
        ).scalars().all()
    text = "\n".join(plan)
    assert "Index Scan using sagas_pkey" in text, text
    assert "Seq Scan on sagas" not in text, text

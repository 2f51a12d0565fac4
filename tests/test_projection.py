"""``saga_attempts`` as a projection of the log: appends leave it alone, a projector catches it
up past its watermark, and whatever stops the projector half way (between batches, or a
SIGKILL inside one), the table ends up as the attempt projection says of the events."""

from __future__ import annotations

import itertools
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saga import Coordinator, EventStore, InvalidInput, Saga, SagaStatus, StepContext
from saga import events as ev
from saga.store.loading import BulkSaga, write_sagas
from saga.store.schema import attempts, events, projections
from saga.store.sql import SqlEventStore
from saga.store.sqlstats import attempts_from_events, compute_stats
from tests.test_attempt_projection import T0, Plan, as_rows, expected, history, plans, rows_in

_ids = itertools.count()


def mark(store: SqlEventStore) -> int:
    """The attempts projection's watermark."""
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(projections.c.position)).scalar_one())


def last_position(store: SqlEventStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0)


def table_rows(store: SqlEventStore) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Every row of ``saga_attempts``, keyed (times rounded to the microsecond)."""
    with store.engine.connect() as conn:
        return _keyed(conn.execute(sa.select(attempts)))


def derived_rows(store: SqlEventStore) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The same rows, derived from the events alone (in SQL)."""
    src = attempts_from_events()
    with store.engine.connect() as conn:
        return _keyed(conn.execute(sa.select(*[src.c[c.name] for c in attempts.c])))


def _keyed(rows: Any) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    def r6(v: Any) -> Any:
        return None if v is None else round(float(v), 6)

    return {(r.saga_id, bool(r.compensation), r.step, r.attempt):
            (r.name, r6(r.started_at), r6(r.ended_at), r6(r.duration), r.outcome, r.error_type)
            for r in rows}


@pytest.fixture
def sql_store(sql_url: str) -> Iterator[SqlEventStore]:
    store = EventStore(sql_url)
    assert isinstance(store, SqlEventStore)
    yield store
    store.close()


def test_an_append_writes_no_attempt_and_a_read_catches_the_table_up(sql_store: SqlEventStore) -> None:
    sql_store.create("s", [ev.SagaStarted(name="n", version=1, at=T0),
                           ev.StepAttemptStarted(step="a", attempt=1, at=T0)],
                     name="n", version=1, status=SagaStatus.RUNNING, wake_at=None, now=T0)
    sql_store.append("s", 2, [ev.StepSucceeded(step="a", attempt=1, result={"x": 1}, at=T0)],
                     status=SagaStatus.RUNNING, wake_at=None, now=T0)
    assert table_rows(sql_store) == {} and mark(sql_store) == 0
    stats = sql_store.stats()
    assert stats.steps["n/a"].successes == 1
    assert mark(sql_store) == last_position(sql_store) == 3
    assert table_rows(sql_store) == derived_rows(sql_store) != {}
    assert sql_store.catch_up() == 0  # nothing left


def test_bad_batch_sizes_are_refused(sql_store: SqlEventStore) -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(InvalidInput, match="batch must be a positive whole number"):
            sql_store.catch_up(batch=bad)  # type: ignore[arg-type]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sagas=st.lists(st.tuples(st.lists(plans, min_size=1, max_size=5), st.booleans(),
                                st.lists(st.booleans(), max_size=5)), min_size=1, max_size=4),
       seed=st.integers(0, 2**16), batch=st.integers(1, 7), stop_after=st.integers(0, 4),
       batch_after=st.integers(1, 50))
def test_a_projector_stopped_between_batches_ends_where_the_events_say(
    sql_url: str, *, sagas: list[tuple[list[Plan], bool, list[bool]]], seed: int, batch: int,
    stop_after: int, batch_after: int,
) -> None:
    n = next(_ids)
    histories = {f"p{n}-{i}": history(f"name{n}-{i}", items, last_running, cuts)
                 for i, (items, last_running, cuts) in enumerate(sagas)}
    # the appends of every saga, interleaved in a random order (each saga's in its own order)
    rng = random.Random(seed)
    queue = [sid for sid, appends in histories.items() for _ in appends]
    rng.shuffle(queue)
    written = dict.fromkeys(histories, 0)
    seqs = dict.fromkeys(histories, 0)
    store = EventStore(sql_url)
    assert isinstance(store, SqlEventStore)
    try:
        for k, sid in enumerate(queue):
            batch_events = histories[sid][written[sid]]
            if written[sid] == 0:
                store.create(sid, batch_events, name=sid.replace("p", "name", 1), version=1,
                             status=SagaStatus.RUNNING, wake_at=None, now=T0)
            else:
                store.append(sid, seqs[sid], batch_events, status=SagaStatus.RUNNING,
                             wake_at=None, now=T0)
            written[sid] += 1
            seqs[sid] += len(batch_events)
            if k == len(queue) // 2 and stop_after:  # a projector stops half way, more to come
                store.catch_up(batches=stop_after, batch=batch)
        store.catch_up(batches=1, batch=batch)
    finally:
        store.close()
    # another process's projector takes over where the last one stopped
    with EventStore(sql_url) as again:
        assert isinstance(again, SqlEventStore)
        again.catch_up(batch=batch_after)
        assert mark(again) == last_position(again)
        got = table_rows(again)
        assert got == derived_rows(again)
        for sid, appends in histories.items():
            evs = [e for b in appends for e in b]
            want = as_rows(expected(evs), sid.replace("p", "name", 1))
            with again.engine.connect() as conn:
                assert rows_in(conn, attempts, sid) == want


_KILLED = """
import sys
from saga import EventStore
store = EventStore(sys.argv[1])
print("go", flush=True)
store.catch_up(batch=int(sys.argv[2]))
print("done", flush=True)
"""


def _bulk_log(store: SqlEventStore, sagas: int) -> None:
    def one(i: int) -> BulkSaga:
        evs: list[ev.Event] = [ev.SagaStarted(name="bulk", version=1, at=T0)]
        for step in ("a", "b", "c"):
            evs += [ev.StepAttemptStarted(step=step, attempt=1, at=T0),
                    ev.StepAttemptFailed(step=step, attempt=1, at=T0, error_type="E", message="m",
                                         retried=True, next_attempt_at=T0),
                    ev.StepAttemptStarted(step=step, attempt=2, at=T0),
                    ev.StepSucceeded(step=step, attempt=2, result={"i": i}, at=T0)]
        return BulkSaga(f"bulk-{i}", "bulk", 1, SagaStatus.RUNNING, evs)

    write_sagas(store, (one(i) for i in range(sagas)))


def test_a_projector_killed_inside_a_batch_leaves_nothing_half_done(sql_url: str) -> None:
    store = EventStore(sql_url)
    assert isinstance(store, SqlEventStore)
    _bulk_log(store, 1500)  # 19,500 events, 9,000 attempts
    last = last_position(store)
    marks = []
    try:
        for delay in (0.05, 0.15, 0.3, 0.45):
            proc = subprocess.Popen([sys.executable, "-c", _KILLED, sql_url, "2000"],
                                    stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "go"
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            marks.append(mark(store))
            # the table holds exactly the attempts of the events up to the watermark
            with store.engine.connect() as conn:
                rows = conn.execute(sa.select(sa.func.count()).select_from(attempts)).scalar_one()
                starts = conn.execute(sa.select(sa.func.count()).select_from(events).where(
                    events.c.position <= marks[-1], events.c.type == "StepAttemptStarted")).scalar_one()
            assert rows == starts
        assert marks == sorted(marks) and marks[0] < last, marks  # killed before the end
        store.catch_up()
        assert mark(store) == last
        assert table_rows(store) == derived_rows(store)
        assert len(table_rows(store)) == 1500 * 6
    finally:
        store.close()


@pytest.mark.postgres
def test_appends_committing_out_of_order_are_never_skipped(postgres_url: str) -> None:
    """Many writers append while a projector keeps catching up: an append that commits after
    one with a later position is still projected."""
    store = EventStore(postgres_url)
    assert isinstance(store, SqlEventStore)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(40):
                sid = f"w{w}-{i}"
                store.create(sid, [ev.SagaStarted(name="race", version=1, at=T0)], name="race",
                             version=1, status=SagaStatus.RUNNING, wake_at=None, now=T0)
                seq = 1
                for n in (1, 2):
                    store.append(sid, seq, [ev.StepAttemptStarted(step="s", attempt=n, at=T0)],
                                 status=SagaStatus.RUNNING, wake_at=None, now=T0)
                    store.append(sid, seq + 1, [ev.StepAttemptFailed(
                        step="s", attempt=n, at=T0, error_type="E", message="m", retried=n == 1,
                        next_attempt_at=T0 if n == 1 else None, gave_up=None if n == 1 else "x")],
                        status=SagaStatus.RUNNING, wake_at=None, now=T0)
                    seq += 2
        except BaseException as e:
            errors.append(e)

    def projector() -> None:
        while not stop.is_set():
            try:
                store.catch_up(batch=7)
            except BaseException as e:
                errors.append(e)
                return

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    follow = threading.Thread(target=projector)
    follow.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    follow.join()
    try:
        assert errors == []
        store.catch_up()
        got = table_rows(store)
        assert len(got) == 6 * 40 * 2
        assert got == derived_rows(store)
        assert {v[4] for v in got.values()} == {"failed"}
    finally:
        store.close()


@pytest.mark.postgres
def test_a_read_only_database_reads_the_attempts_from_the_events(postgres_url: str) -> None:
    with EventStore(postgres_url) as store:
        assert isinstance(store, SqlEventStore)
        _bulk_log(store, 20)
        with store.engine.connect() as conn:
            want = compute_stats(conn, attempts=attempts_from_events())
    name = sa.make_url(postgres_url).database
    admin = sa.make_url(postgres_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    with EventStore(postgres_url, schema="require") as store:
        assert store.stats() == want
        assert store.stats().steps["bulk/a"].failures == 20
        assert [r.saga_id for r in store.list_sagas(error_type="E", limit=100).rows] != []
        assert isinstance(store, SqlEventStore) and table_rows(store) == {}


def test_an_idle_worker_brings_the_table_up_to_date(sqlite_url: str) -> None:
    saga = Saga("idle", version=1)

    @saga.step
    def one(ctx: StepContext) -> dict[str, int]:
        return {"n": 1}

    store = EventStore(sqlite_url)
    assert isinstance(store, SqlEventStore)
    coordinator = Coordinator(store, sagas=[saga], poll_interval=0.05)
    for i in range(5):
        coordinator.start("idle", {}, saga_id=f"i{i}")
    stop = threading.Event()
    worker = threading.Thread(target=coordinator.work, kwargs={"stop": stop})
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while not (len(store.find(status="completed")) == 5 and mark(store) == last_position(store)):
            assert time.monotonic() < deadline, (mark(store), last_position(store))
            time.sleep(0.05)
        # no reader has asked: the worker caught the table up on its own
        assert len(table_rows(store)) == 5 and table_rows(store) == derived_rows(store)
    finally:
        stop.set()
        worker.join()
        coordinator.close()
        store.close()


def test_a_read_only_sqlite_file_reads_the_attempts_from_the_events(sqlite_url: str) -> None:
    with EventStore(sqlite_url) as store:
        assert isinstance(store, SqlEventStore)
        _bulk_log(store, 20)
        with store.engine.connect() as conn:
            want = compute_stats(conn, attempts=attempts_from_events())
    with EventStore(sqlite_url, schema="require") as store:
        assert isinstance(store, SqlEventStore)

        @sa.event.listens_for(store.engine, "connect")
        def _read_only(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA query_only = ON")  # SQLite refuses every write

        store.engine.dispose()
        assert store.stats() == want
        assert store.stats().steps["bulk/a"].failures == 20
        assert table_rows(store) == {} and mark(store) == 0

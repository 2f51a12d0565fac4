"""Statistics and a filtered saga list over a large log, on SQLite and PostgreSQL.

Builds a log of ``--events`` realistic events (sagas of three names that
retry, time out, lose workers, fail steps and compensate) straight into the
store's tables with multi-row inserts, then times, beside a raw
``SELECT count(*)`` over the events table measured in the same run:

- ``stats``: :func:`saga.stats.compute_stats` (every figure in SQL), unfiltered and with
  ``--name``/``--since``-style filters;
- ``list``: sagas filtered by status, name, failed step, error type and a
  time range, newest first, one page after a cursor.

Each query runs on the tables as the store creates them, then again after
the indexes and derived columns below are added (``CREATE INDEX`` here; a
migration adds them for real).

    python benchmarks/history_queries.py --events 1000000 --backend sqlite --backend postgres
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from saga import EventStore
from saga.stats import ATTEMPT_COLUMNS, attempts_from_events, compute_stats
from saga.store.schema import events, sagas

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

# name -> [(step, probability an attempt fails)]
SAGAS: dict[str, list[tuple[str, float]]] = {
    "trip": [("flight", 0.05), ("hotel", 0.1), ("car", 0.02), ("charge", 0.3)],
    "order": [("reserve", 0.02), ("pay", 0.2), ("ship", 0.05)],
    "refund": [("lookup", 0.01), ("refund", 0.15)],
}
ERRORS = ["ConnectionError", "HTTPStatusError", "ValueError", "OperationalError"]
MAX_ATTEMPTS = 3
SPAN = timedelta(days=30)


@dataclass
class Log:
    """Rows being generated: the events and the saga index rows."""

    events: list[dict[str, Any]]
    sagas: list[dict[str, Any]]


class SagaWriter:
    """Writes one saga's events as the coordinator would, with plausible times."""

    def __init__(self, rng: random.Random, saga_id: str, name: str, at: datetime, log: Log) -> None:
        self.rng, self.saga_id, self.name, self.at, self.log = rng, saga_id, name, at, log
        self.seq = 0

    def emit(self, type_: str, **data: Any) -> None:
        self.seq += 1
        data["at"] = self.at.isoformat().replace("+00:00", "Z")
        self.log.events.append({"saga_id": self.saga_id, "seq": self.seq, "type": type_, "schema_version": 1,
                                "data": data, "recorded_at": self.at.timestamp(), "writer": "bench"})

    def tick(self, mean: float) -> None:
        self.at += timedelta(seconds=self.rng.expovariate(1 / mean))

    def attempt(self, step: str, fail_p: float, comp: bool, stop: bool) -> str:
        """Run one step's attempts; returns ``succeeded``, ``failed`` or ``running``."""
        prefix = "Compensation" if comp else "Step"
        for n in range(1, MAX_ATTEMPTS + 1):
            self.emit(f"{prefix}AttemptStarted", step=step, attempt=n, timeout_at=None)
            if stop:
                return "running"
            self.tick(0.2)
            if self.rng.random() >= fail_p:
                self.emit("StepCompensated" if comp else "StepSucceeded", step=step, attempt=n,
                          **({} if comp else {"result": {"ref": f"{step}-{n}"}}))
                return "succeeded"
            roll = self.rng.random()
            timed_out, lost = roll < 0.2, 0.2 <= roll < 0.25
            error = "TimeoutError" if timed_out else "WorkerLost" if lost else self.rng.choice(ERRORS)
            retried = n < MAX_ATTEMPTS
            nxt = self.at + timedelta(seconds=2**n) if retried else None
            self.emit(f"{prefix}AttemptFailed", step=step, attempt=n, error_type=error,
                      message=f"{error} while calling {step}", timed_out=timed_out, lost=lost,
                      retried=retried, next_attempt_at=None if nxt is None else nxt.isoformat(),
                      gave_up=None if retried else "attempts spent")
            if nxt is not None:
                self.at = nxt
        return "failed"

    def run(self, running: bool) -> None:
        steps = SAGAS[self.name]
        self.emit("SagaStarted", name=self.name, version=1, input={"customer": self.saga_id[-6:]},
                  deadline=None)
        created = self.at.timestamp()
        stop_at = self.rng.randrange(len(steps)) if running else -1
        done: list[str] = []
        status = "completed"
        for i, (step, p) in enumerate(steps):
            outcome = self.attempt(step, p, False, i == stop_at)
            if outcome == "running":
                status = "running"
                break
            if outcome == "failed":
                self.emit("StepFailed", step=step, reason="attempts spent")
                self.emit("CompensationStarted", reason=f"{step} failed", step=step)
                status = "compensated"
                for undo in reversed(done):
                    if self.attempt(undo, 0.02, True, False) == "failed":
                        self.emit("CompensationFailed", step=undo, reason="attempts spent")
                        self.emit("SagaFailed", step=undo, reason="attempts spent")
                        status = "failed"
                        break
                else:
                    self.emit("SagaCompensated")
                break
            done.append(step)
        else:
            self.emit("SagaCompleted")
        self.log.sagas.append({"saga_id": self.saga_id, "name": self.name, "version": 1, "status": status,
                               "last_seq": self.seq, "created_at": created, "updated_at": self.at.timestamp(),
                               "wake_at": None, "lease_owner": None, "lease_expires_at": None})


def generate(n_events: int, *, seed: int, now: datetime, batch: int = 20_000) -> Iterator[Log]:
    """Batches of whole sagas, about ``n_events`` events in all, started over the 30 days before ``now``."""
    rng = random.Random(seed)
    expected_sagas = max(1, n_events // 10)
    start = now - SPAN
    log = Log([], [])
    written = i = 0
    while written < n_events:
        at = start + SPAN * (i / expected_sagas) if i < expected_sagas else now
        name = rng.choices(list(SAGAS), weights=[5, 3, 2])[0]
        before = len(log.events)
        SagaWriter(rng, f"s{i:09d}", name, at, log).run(running=rng.random() < 0.02)
        written += len(log.events) - before
        i += 1
        if len(log.events) >= batch:
            yield log
            log = Log([], [])
    if log.events:
        yield log


def build(engine: sa.Engine, n_events: int, now: datetime) -> tuple[int, int, float]:
    """Fill the tables; ``(sagas, events, seconds)``."""
    t = time.perf_counter()
    n_sagas = n_ev = 0
    with engine.begin() as conn:
        for log in generate(n_events, seed=7, now=now):
            conn.execute(sagas.insert(), log.sagas)
            conn.execute(events.insert(), log.events)
            n_sagas += len(log.sagas)
            n_ev += len(log.events)
    settle(engine)
    return n_sagas, n_ev, time.perf_counter() - t


def settle(engine: sa.Engine) -> None:
    """Bring the tables to the state autovacuum keeps a live database in: statistics gathered and,
    on PostgreSQL, the visibility map set (without it an index-only scan still visits the heap)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")


# -- the list query (prototype of the store's filtered list) ----------------------------------------------

def list_query(
    *,
    status: str | None = None,
    name: str | None = None,
    failed_step: str | None = None,
    error_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: tuple[float, str] | None = None,
    limit: int = 50,
    derived: bool = False,
) -> sa.Select[Any]:
    """Sagas newest first (by start, then id) after ``cursor``; ``derived`` uses the derived columns."""
    stmt = sa.select(sagas.c.saga_id, sagas.c.name, sagas.c.status, sagas.c.created_at, sagas.c.updated_at)
    if status is not None:
        stmt = stmt.where(sagas.c.status == status)
    if name is not None:
        stmt = stmt.where(sagas.c.name == name)
    if since is not None:
        stmt = stmt.where(sagas.c.created_at >= since.timestamp())
    if until is not None:
        stmt = stmt.where(sagas.c.created_at < until.timestamp())
    if failed_step is not None:
        if derived:
            stmt = stmt.where(sa.literal_column("sagas.failed_step") == failed_step)
        else:
            stmt = stmt.where(sa.exists().where(
                events.c.saga_id == sagas.c.saga_id, events.c.type == "StepFailed",
                events.c.data["step"].as_string() == failed_step))
    if error_type is not None:
        if derived:
            stmt = stmt.where(sa.exists().where(
                ATTEMPTS.c.saga_id == sagas.c.saga_id, ATTEMPTS.c.error_type == error_type))
        else:
            stmt = stmt.where(sa.exists().where(
                events.c.saga_id == sagas.c.saga_id,
                events.c.type.in_(("StepAttemptFailed", "CompensationAttemptFailed")),
                events.c.data["error_type"].as_string() == error_type))
    if cursor is not None:
        stmt = stmt.where(sa.tuple_(sagas.c.created_at, sagas.c.saga_id) < sa.tuple_(*cursor))
    return stmt.order_by(sagas.c.created_at.desc(), sagas.c.saga_id.desc()).limit(limit)


prototype = sa.MetaData()

ATTEMPTS = sa.Table(
    "saga_attempts",
    prototype,
    sa.Column("saga_id", sa.String(200), primary_key=True),
    sa.Column("compensation", sa.Boolean, primary_key=True),
    sa.Column("step", sa.String(128), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("started_at", sa.Float(precision=53), nullable=False),
    sa.Column("ended_at", sa.Float(precision=53), nullable=True),
    sa.Column("duration", sa.Float(precision=53), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error_type", sa.String(200), nullable=True),
    # one covering index: the step counts read it alone, and a percentile walks one step's durations
    sa.Index("ix_saga_attempts_step", "compensation", "name", "step", "duration", "outcome", "started_at"),
    sa.Index("ix_saga_attempts_error_type", "error_type", "saga_id",
             sqlite_where=sa.text("error_type IS NOT NULL"),
             postgresql_where=sa.text("error_type IS NOT NULL")),
)
"""One row per attempt, kept beside the log (the prototype of the table a migration adds)."""

SAGA_INDEXES = [
    "ALTER TABLE sagas ADD COLUMN failed_step VARCHAR(128)",
    "UPDATE sagas SET failed_step = (SELECT {step} FROM saga_events e WHERE e.saga_id = sagas.saga_id"
    " AND e.type = 'StepFailed')",
    "CREATE INDEX ix_sagas_created_at ON sagas (created_at, saga_id)",
    "CREATE INDEX ix_sagas_status_created_at ON sagas (status, created_at, saga_id)",
    "CREATE INDEX ix_sagas_name_created_at ON sagas (name, created_at, saga_id)",
    "CREATE INDEX ix_sagas_failed_step ON sagas (failed_step, created_at, saga_id)"
    " WHERE failed_step IS NOT NULL",
]
"""The derived column and indexes on ``sagas`` the filtered list needs."""


def fill_attempts(conn: sa.Connection) -> None:
    """Create :data:`ATTEMPTS` and fill it from the events (as a migration's backfill does)."""
    ATTEMPTS.create(conn)
    src = attempts_from_events()
    conn.execute(ATTEMPTS.insert().from_select(
        list(ATTEMPT_COLUMNS), sa.select(*[src.c[k] for k in ATTEMPT_COLUMNS])))


def add_indexes(engine: sa.Engine) -> float:
    """Prototype the derived table, column and indexes; seconds taken."""
    pg = engine.dialect.name == "postgresql"
    step = "e.data->>'step'" if pg else "json_extract(e.data, '$.step')"
    t = time.perf_counter()
    with engine.begin() as conn:
        fill_attempts(conn)
        for sql in SAGA_INDEXES:
            conn.exec_driver_sql(sql.format(step=step))
    settle(engine)
    return time.perf_counter() - t


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(
    engine: sa.Engine, now: datetime, *, derived: bool, repeat: int, slow_stats: bool
) -> list[tuple[str, float | None]]:
    """Timings of the raw baseline, stats and list queries on ``engine`` (``None``: not run).

    Without the attempts table, stats derives attempts from the events once per
    query (minutes on a million events): it runs only if ``slow_stats``.
    """
    week = now - timedelta(days=7)

    def run(stmt: sa.Executable) -> Callable[[], object]:
        def go() -> object:
            with engine.connect() as conn:
                return conn.execute(stmt).all()
        return go

    def stats(**kw: Any) -> Callable[[], object]:
        def go() -> object:
            with engine.connect() as conn:
                return compute_stats(conn, attempts=ATTEMPTS if derived else None, **kw)
        return go

    with engine.connect() as conn:
        page = conn.execute(list_query(limit=50)).all()
    cursor = (page[-1].created_at, page[-1].saga_id)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("raw: SELECT count(*) FROM saga_events", run(sa.select(sa.func.count()).select_from(events))),
        ("stats", stats()),
        ("stats --name order --since 7d", stats(name="order", since=week)),
        ("list (no filter, newest first)", run(list_query(derived=derived))),
        ("list --status failed", run(list_query(status="failed", derived=derived))),
        ("list --name trip --since 7d --until 1d", run(list_query(
            name="trip", since=week, until=now - timedelta(days=1), derived=derived))),
        ("list --failed-step charge", run(list_query(failed_step="charge", derived=derived))),
        ("list --error-type ValueError", run(list_query(error_type="ValueError", derived=derived))),
        ("list --status compensated --failed-step pay --error-type TimeoutError --cursor", run(list_query(
            status="compensated", failed_step="pay", error_type="TimeoutError", cursor=cursor,
            derived=derived))),
    ]
    return [(label, None if label.startswith("stats") and not derived and not slow_stats
             else timed(fn, repeat)) for label, fn in cases]


def _ms(seconds: float | None) -> str:
    return "not run" if seconds is None else f"{seconds * 1000:.1f} ms"


def open_backend(backend: str, workdir: Path, admin_url: str) -> tuple[str, Callable[[], None]]:
    """A fresh database with the store's schema: ``(url, drop)``."""
    if backend == "sqlite":
        url = f"sqlite:///{workdir / f'history-{uuid.uuid4().hex[:8]}.db'}"
        EventStore(url).close()
        return url, lambda: None
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    name = f"saga_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    EventStore(url).close()

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    return url, drop


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints one table per backend."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--postgres-url",
                        default=os.environ.get("SAGA_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for backend in args.backend or ["sqlite"]:
            url, drop = open_backend(backend, Path(tmp), args.postgres_url)
            engine = sa.create_engine(url, poolclass=sa.NullPool)
            try:
                n_sagas, n_events, secs = build(engine, args.events, now)
                print(f"{backend}: built {n_events} events of {n_sagas} sagas in {secs:.1f}s "
                      f"({n_events / secs:,.0f} events/s)")
                slow = n_events <= 50_000
                before = measure(engine, now, derived=False, repeat=args.repeat, slow_stats=slow)
                index_secs = add_indexes(engine)
                after = measure(engine, now, derived=True, repeat=args.repeat, slow_stats=slow)
                with engine.connect() as conn:
                    if slow and compute_stats(conn) != compute_stats(conn, attempts=ATTEMPTS):
                        print("  stats differ between the events and the attempts table", file=sys.stderr)
                        return 1
                print(f"  derived columns and indexes added in {index_secs:.1f}s")
                print(f"  {'query':<82} {'tables as now':>14} {'with indexes':>13}")
                for (label, t0), (_, t1) in zip(before, after, strict=True):
                    print(f"  {label:<82} {_ms(t0):>14} {_ms(t1):>13}")
            finally:
                engine.dispose()
                drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

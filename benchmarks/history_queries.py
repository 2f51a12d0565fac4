"""Statistics and a filtered saga list over a large log, on SQLite and PostgreSQL.

Builds a log of ``--events`` realistic events (sagas of three names that
retry, time out, lose workers, fail steps and compensate) through the store's
bulk path (:func:`saga.store.loading.write_sagas`: hashes and failed steps as
the appends keep them, many sagas per transaction) on the schema the
migrations build, times the attempts projection catching up with it
(:meth:`~saga.store.EventLog.catch_up`), then times, beside a raw ``SELECT count(*)`` over the
events table measured in the same run:

- ``stats``: :meth:`saga.store.EventLog.stats` (every figure in SQL, from
  ``saga_attempts``), unfiltered and with ``--name``/``--since``-style filters;
- ``list``: :meth:`saga.store.EventLog.list_sagas` filtered by status, name,
  failed step, error type and a time range, newest first, one page after a cursor.

On a small log (50,000 events or fewer) it also checks that the statistics
from ``saga_attempts`` equal those derived from the events alone, and exits 1
if they differ.

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

from saga import EventStore, SagaStatus
from saga import events as ev
from saga.inspection.stats import attempts_from_events
from saga.store.loading import BulkSaga, write_sagas
from saga.store.reads import Stats
from saga.store.schema import attempts, events
from saga.store.sql import SqlEventStore
from saga.store.sqlstats import compute_stats

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
    """Sagas being generated, and how many events they hold."""

    sagas: list[BulkSaga]
    events: int = 0


class SagaWriter:
    """Writes one saga's events as the coordinator would, with plausible times."""

    def __init__(self, rng: random.Random, saga_id: str, name: str, at: datetime, log: Log) -> None:
        self.rng, self.saga_id, self.name, self.at, self.log = rng, saga_id, name, at, log
        self.events: list[ev.Event] = []

    def emit(self, type_: str, **data: Any) -> None:
        data["at"] = self.at
        self.events.append(ev.EVENT_TYPES[type_](**data))

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
                      retried=retried, next_attempt_at=nxt,
                      gave_up=None if retried else "attempts spent")
            if nxt is not None:
                self.at = nxt
        return "failed"

    def run(self, running: bool) -> None:
        steps = SAGAS[self.name]
        self.emit("SagaStarted", name=self.name, version=1, input={"customer": self.saga_id[-6:]},
                  deadline=None)
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
        self.log.sagas.append(BulkSaga(self.saga_id, self.name, 1, SagaStatus(status), self.events,
                                       wake_at=self.at if status == "running" else None))
        self.log.events += len(self.events)


def generate(n_events: int, *, seed: int, now: datetime, batch: int = 20_000) -> Iterator[Log]:
    """Batches of whole sagas, about ``n_events`` events in all, started over the 30 days before ``now``."""
    rng = random.Random(seed)
    expected_sagas = max(1, n_events // 10)
    start = now - SPAN
    log = Log([])
    written = i = 0
    while written < n_events:
        at = start + SPAN * (i / expected_sagas) if i < expected_sagas else now
        name = rng.choices(list(SAGAS), weights=[5, 3, 2])[0]
        before = log.events
        SagaWriter(rng, f"s{i:09d}", name, at, log).run(running=rng.random() < 0.02)
        written += log.events - before
        i += 1
        if log.events >= batch:
            yield log
            log = Log([])
    if log.sagas:
        yield log


def build(store: SqlEventStore, n_events: int, now: datetime) -> tuple[int, int, float, float]:
    """Fill the tables through the store's bulk path, then bring the attempts projection up to
    date; ``(sagas, events, seconds to write, seconds to project)``."""
    t = time.perf_counter()
    n_sagas, n_ev = write_sagas(store, (s for log in generate(n_events, seed=7, now=now) for s in log.sagas))
    written = time.perf_counter()
    store.catch_up()
    projected = time.perf_counter()
    settle(store.engine)
    return n_sagas, n_ev, written - t, projected - written


def settle(engine: sa.Engine) -> None:
    """Bring the tables to the state autovacuum keeps a live database in: statistics gathered and,
    on PostgreSQL, the visibility map set (without it an index-only scan still visits the heap)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(store: SqlEventStore, now: datetime, *, repeat: int) -> list[tuple[str, float]]:
    """Best timings of the raw baseline, stats and list queries on ``store``."""
    week = now - timedelta(days=7)

    def raw() -> object:
        with store.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()

    def stats(**kw: Any) -> Callable[[], object]:
        return lambda: store.stats(**kw)

    def listing(**kw: Any) -> Callable[[], object]:
        return lambda: store.list_sagas(**kw)

    cursor = store.list_sagas(status="compensated", failed_step="pay").cursor
    cases: list[tuple[str, Callable[[], object]]] = [
        ("raw: SELECT count(*) FROM saga_events", raw),
        ("stats", stats()),
        ("stats --name order --since 7d", stats(name="order", since=week)),
        ("list (no filter, newest first)", listing()),
        ("list --status failed", listing(status="failed")),
        ("list --name trip --since 7d --until 1d", listing(
            name="trip", since=week, until=now - timedelta(days=1))),
        ("list --failed-step charge", listing(failed_step="charge")),
        ("list --error-type ValueError", listing(error_type="ValueError")),
        ("list --status compensated --failed-step pay --error-type TimeoutError --cursor", listing(
            status="compensated", failed_step="pay", error_type="TimeoutError", cursor=cursor)),
    ]
    return [(label, timed(fn, repeat)) for label, fn in cases]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _same(kept: Stats, derived: Stats) -> bool:
    """Equal counts, and durations equal to a microsecond (each source subtracts its own floats)."""
    if (kept.sagas, kept.top_errors, list(kept.steps)) != (derived.sagas, derived.top_errors,
                                                           list(derived.steps)):
        return False
    for key, a in kept.steps.items():
        b = derived.steps[key]
        if (a.attempts, a.successes, a.failures, a.timeouts, a.lost) != (
                b.attempts, b.successes, b.failures, b.timeouts, b.lost):
            return False
        for x, y in ((a.p50, b.p50), (a.p95, b.p95), (a.p99, b.p99)):
            if (x is None) != (y is None) or (x is not None and y is not None and abs(x - y) > 1e-6):
                return False
    return True


def sources_agree(store: SqlEventStore) -> bool:
    """Whether the statistics from ``saga_attempts`` equal those derived from the events alone."""
    with store.engine.connect() as conn:
        return all(_same(compute_stats(conn, attempts=attempts, name=name),
                         compute_stats(conn, attempts=attempts_from_events(), name=name))
                   for name in (None, "trip"))


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
            store = EventStore(url)
            assert isinstance(store, SqlEventStore)
            try:
                n_sagas, n_events, secs, projecting = build(store, args.events, now)
                print(f"{backend}: built {n_events} events of {n_sagas} sagas in {secs:.1f}s "
                      f"({n_events / secs:,.0f} events/s); the attempts projection caught up "
                      f"in {projecting:.1f}s ({n_events / projecting:,.0f} events/s)")
                if n_events <= 50_000 and not sources_agree(store):
                    print("  stats differ between the events and the attempts table", file=sys.stderr)
                    return 1
                timings = measure(store, now, repeat=args.repeat)
                raw = timings[0][1]
                print(f"  {'query':<82} {'time':>10} {'x raw':>7}")
                for label, t in timings:
                    print(f"  {label:<82} {_ms(t):>10} {t / raw:>7.1f}")
            finally:
                store.close()
                drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

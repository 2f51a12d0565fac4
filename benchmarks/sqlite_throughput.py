"""Throughput of a 3-step saga on SQLite, beside the raw commit rate of the same file.

Prints, in one run: sagas/s, steps/s and database commits per step for a
3-step saga driven one after another in one process, both as
``coordinator.execute(...)`` and as ``coordinator.start(...)`` then
``coordinator.run(...)``; and the rate of single-row insert+commit through
plain :mod:`sqlite3` on the same database file with the same durability
settings (WAL, ``synchronous=FULL``), measured before and after the sagas.

Commits are counted independently of the store's code: a sqlite3 trace
callback on every connection of ``store.engine`` counts the ``COMMIT``
statements that close a ``BEGIN IMMEDIATE`` (write) transaction.

    python benchmarks/sqlite_throughput.py --sagas 2000
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event

from saga import Coordinator, EventStore, Retry, Saga, SagaStatus, StepContext
from saga.store.sql import SqlEventStore

STEPS = 3


def build_saga(*, timeout: float | None) -> Saga:
    """A 3-step saga whose steps succeed at once with a small result, each with a compensation."""
    saga = Saga("bench-trip", version=1)
    retry = Retry.exponential(initial=0.1, maximum=5.0, multiplier=2.0, attempts=5, jitter=True)

    def make(n: int) -> None:
        def step(ctx: StepContext) -> dict[str, Any]:
            return {"booking": f"{ctx.saga_id}-{n}", "attempt": ctx.attempt}

        def undo(ctx: StepContext) -> None:
            return None

        saga.step(name=f"step{n}", retry=retry, timeout=timeout)(step).compensate(undo)

    for n in range(1, STEPS + 1):
        make(n)
    return saga


class CommitCounter:
    """Counts write commits on a store's SQLite connections through sqlite3's trace callback."""

    def __init__(self) -> None:
        self.commits = 0
        self._lock = threading.Lock()

    def attach(self, store: EventStore) -> None:
        """Trace every connection the store's engine opens from now on."""
        assert isinstance(store, SqlEventStore)

        @event.listens_for(store.engine, "connect")
        def _trace(dbapi_conn: Any, _record: Any) -> None:
            in_write = [False]

            def seen(sql: str) -> None:
                head = sql.lstrip()[:16].upper()
                if head.startswith("BEGIN IMMEDIATE"):
                    in_write[0] = True
                elif head.startswith("COMMIT") and in_write[0]:
                    in_write[0] = False
                    with self._lock:
                        self.commits += 1
                elif head.startswith("ROLLBACK"):
                    in_write[0] = False

            dbapi_conn.set_trace_callback(seen)

        store.engine.dispose()  # connections opened before the listener reopen traced


def raw_rate(path: Path, count: int) -> float:
    """Single-row insert+commit per second through plain sqlite3 (WAL, synchronous=FULL)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        for i in range(min(count, 500)):  # untimed: let the file and its WAL grow first
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO bench_raw (v) VALUES (?)", (f"warm-{i}",))
            conn.execute("COMMIT")
        t0 = time.perf_counter()
        for i in range(count):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO bench_raw (v) VALUES (?)", (f"row-{i}",))
            conn.execute("COMMIT")
        return count / (time.perf_counter() - t0)
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class Result:
    """One way of running: how many sagas, how long, how many commits."""

    mode: str
    sagas: int
    seconds: float
    cpu_seconds: float
    commits: int

    @property
    def sagas_per_s(self) -> float:
        return self.sagas / self.seconds

    @property
    def commits_per_step(self) -> float:
        return self.commits / (self.sagas * STEPS)


def run_mode(
    mode: str,
    drive: Callable[[str], None],
    counter: CommitCounter,
    *,
    count: int,
    warmup: int,
) -> Result:
    """Drive ``warmup`` then ``count`` sagas one after another, timing and counting the latter."""
    for i in range(warmup):
        drive(f"{mode}-warm-{i}")
    before = counter.commits
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(count):
        drive(f"{mode}-{i}")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return Result(mode, count, seconds, cpu, counter.commits - before)


def measure(path: Path, *, sagas: int, warmup: int, raw: int, timeout: float | None
            ) -> tuple[list[Result], float, float]:
    """Run the raw baseline, both saga modes, and the baseline again, on one database file."""
    url = f"sqlite:///{path}"
    store = EventStore(url)
    assert isinstance(store, EventStore)
    counter = CommitCounter()
    counter.attach(store)
    saga = build_saga(timeout=timeout)
    coordinator = Coordinator(store, sagas=[saga])

    def execute(saga_id: str) -> None:
        view = coordinator.execute(saga.name, {"city": "Oslo"}, saga_id=saga_id)
        if view.status is not SagaStatus.COMPLETED:
            raise RuntimeError(f"saga {saga_id} ended {view.status}")

    def start_run(saga_id: str) -> None:
        coordinator.start(saga.name, {"city": "Oslo"}, saga_id=saga_id)
        view = coordinator.run(saga_id)
        if view.status is not SagaStatus.COMPLETED:
            raise RuntimeError(f"saga {saga_id} ended {view.status}")

    try:
        raw_before = raw_rate(path, raw)
        results = [
            run_mode("execute", execute, counter, count=sagas, warmup=warmup),
            run_mode("start+run", start_run, counter, count=sagas, warmup=warmup),
        ]
        raw_after = raw_rate(path, raw)
    finally:
        coordinator.close()
        store.close()
    return results, raw_before, raw_after


def report(results: Sequence[Result], raw_before: float, raw_after: float, *, out: Any) -> None:
    """Print the figures as a small table."""
    raw = (raw_before + raw_after) / 2
    print(f"raw sqlite3 insert+commit (WAL, synchronous=FULL): {raw:,.0f} commits/s "
          f"(before {raw_before:,.0f}, after {raw_after:,.0f})", file=out)
    print(f"{'mode':<10} {'sagas':>6} {'sagas/s':>9} {'steps/s':>9} {'commits/step':>13} "
          f"{'% of raw':>9} {'CPU ms/saga':>12}", file=out)
    for r in results:
        print(f"{r.mode:<10} {r.sagas:>6} {r.sagas_per_s:>9,.0f} {r.sagas_per_s * STEPS:>9,.0f} "
              f"{r.commits_per_step:>13.3f} {100 * r.sagas_per_s / raw:>8.1f}% "
              f"{1000 * r.cpu_seconds / r.sagas:>12.3f}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sagas", type=int, default=2000, help="sagas timed per mode")
    parser.add_argument("--warmup", type=int, default=100, help="sagas run before timing, per mode")
    parser.add_argument("--raw", type=int, default=5000, help="raw insert+commits per measurement")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="per-attempt timeout of each step in seconds (0: none)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="directory for the database file (default: a fresh temporary one)")
    args = parser.parse_args(argv)
    if args.sagas < 1 or args.raw < 1 or args.warmup < 0:
        parser.error("--sagas and --raw must be at least 1, --warmup at least 0")
    timeout = args.timeout or None
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="saga-bench-") as d:
        results, before, after = measure(
            Path(d) / "bench.db", sagas=args.sagas, warmup=args.warmup, raw=args.raw, timeout=timeout
        )
    report(results, before, after, out=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One measured run of a side-by-side benchmark, on the ``saga`` package this process imports.

Run by ``against_commit.py`` (once with an old commit's package, once with the
working tree's, pinned by ``benchmarks/trees.py``) and by ``against_dbos.py``;
prints one line ``RESULT {json}`` holding the figures. Uses only the public
API of ``saga`` that every version compared has (``Coordinator``,
``EventStore``, ``Saga``, ``Retry``, ``SagaStatus``, ``StepContext``, through
``postgres_throughput.py``'s saga and workers), so that it runs on both.

Workloads:

- ``pg-workers``: a backlog of started sagas drained by worker processes,
  sagas/s from ``go`` to drained;
- ``sqlite-one``, ``pg-one``: sagas one at a time, ``start`` + ``run`` and
  ``execute``, sagas/s;
- ``pg-recover``: sagas left mid-step by SIGKILLed workers, finished by one
  restarted worker once the leases have expired, sagas/s from the restart.

Beside each rate: commits and WAL per saga, counted by ``benchmarks/meters.py``.
Commits and WAL of one-at-a-time runs leave out the cost of opening and
closing the store (measured by an empty open and close, and taken off);
those of worker runs include the workers' start and stop.

    python benchmarks/saga_workloads.py --workload pg-one --url postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks.*`` importable
    sys.path.append(str(Path(__file__).resolve().parents[1]))

import psycopg
import sqlalchemy as sa

import saga
from benchmarks.meters import Cost, Drain, Meter, PgMeter, Run, instrument_sqlite
from benchmarks.postgres_throughput import (
    SAGA,
    Workers,
    build_saga,
    libpq,
    start_sagas,
    wait_for,
)
from benchmarks.trees import TREE_VARIABLE
from saga import Coordinator, EventStore, SagaStatus

WORKLOADS = ("pg-workers", "sqlite-one", "pg-one", "pg-recover")


# -- one at a time -----------------------------------------------------------------------------


def cycle(url: str, meter: Meter, body: Callable[[Coordinator], None]) -> tuple[float, Cost]:
    """Open a store and a coordinator, time ``body``, close them; the seconds, and the counters
    from before the opening to the end (see :class:`benchmarks.meters.Meter`)."""
    before = meter.read()
    store = EventStore(url)
    coordinator = Coordinator(store, sagas=[build_saga()])
    try:
        t0 = time.perf_counter()
        body(coordinator)
        seconds = time.perf_counter() - t0
        during = meter.read() if meter.reads_open else None
    finally:
        coordinator.close()
        store.close()
    after = during if during is not None else meter.read()
    return seconds, meter.cost(before, after)


def drive(mode: str, prefix: str, count: int) -> Callable[[Coordinator], None]:
    """A body for :func:`cycle`: ``count`` sagas one after another."""

    def body(coordinator: Coordinator) -> None:
        for i in range(count):
            saga_id = f"{prefix}-{i}"
            if mode == "execute":
                status = coordinator.execute(SAGA, {"city": "Oslo"}, saga_id=saga_id).status
            else:
                coordinator.start(SAGA, {"city": "Oslo"}, saga_id=saga_id)
                status = coordinator.run(saga_id).status
            if status is not SagaStatus.COMPLETED:
                raise RuntimeError(f"saga {saga_id} ended {status}")

    return body


def one_at_a_time(url: str, meter: Meter, run: Run, *, count: int, warmup: int) -> None:
    """Both modes: a warm-up, an empty open and close (its cost is taken off), the timed run."""
    for mode in ("start+run", "execute"):
        if warmup:
            cycle(url, meter, drive(mode, f"warm-{mode}", warmup))
        _, idle = cycle(url, meter, lambda c: None)
        seconds, cost = cycle(url, meter, drive(mode, f"one-{mode}", count))
        run.add(mode, count, seconds, cost, idle)


# -- worker processes --------------------------------------------------------------------------

COMPLETED = "SELECT count(*) FROM sagas WHERE status = 'completed'"


def pg_workers(url: str, meter: PgMeter, run: Run, *, sagas: int, workers: int, concurrency: int
               ) -> None:
    """A backlog of ``sagas`` started sagas drained by ``workers`` processes."""
    start_sagas(url, "w", sagas)
    before = meter.read()
    drain = Drain(libpq(url), COMPLETED)
    pool = Workers(url, workers, concurrency=concurrency, lease=30.0)
    try:
        pool.ready()
        t0 = time.perf_counter()
        pool.go()
        t1 = drain.wait(sagas, timeout=1800)
    finally:
        pool.stop()
    run.add("", sagas, t1 - t0, meter.cost(before, meter.read()).less_commits(drain.commits))


def pg_recover(url: str, meter: PgMeter, run: Run, *, sagas: int, concurrency: int, lease: float
               ) -> None:
    """``sagas`` sagas whose workers were SIGKILLed in their second step, finished by one
    restarted worker once the leases have expired (as ``postgres_throughput.py`` does)."""
    start_sagas(url, "rec", sagas)
    n = 2 if sagas >= 100 else 1
    doomed = Workers(url, n, concurrency=math.ceil(sagas / n), lease=lease, hang=True)
    try:
        doomed.ready()
        doomed.go()
        wait_for(url, "last_seq = 4", sagas, timeout=600)
    finally:
        doomed.kill()
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT max(lease_expires_at) - extract(epoch from clock_timestamp()) FROM sagas"
        ).fetchone()
    time.sleep(max(0.0, float(row[0] if row and row[0] is not None else 0.0)) + 0.05)
    before = meter.read()
    drain = Drain(libpq(url), COMPLETED)
    t0 = time.perf_counter()
    survivor = Workers(url, 1, concurrency=concurrency, lease=30.0)
    try:
        survivor.ready()
        survivor.go()
        t1 = drain.wait(sagas, timeout=1800)
    finally:
        survivor.stop()
    run.add("", sagas, t1 - t0, meter.cost(before, meter.read()).less_commits(drain.commits))


# -- main --------------------------------------------------------------------------------------


def pinned() -> list[str]:
    """The ``saga`` modules loaded from outside the pinned tree (none when nothing is pinned)."""
    tree = os.environ.get(TREE_VARIABLE)
    if not tree:
        return []
    return [name for name, module in sorted(sys.modules.items())
            if (name == "saga" or name.startswith("saga."))
            and getattr(module, "__file__", None)
            and not os.path.abspath(str(module.__file__)).startswith(tree + os.sep)]


def measure(args: argparse.Namespace) -> Run:
    """Run the workload ``args.workload``."""
    if args.workload == "sqlite-one":
        path = Path(args.url)
        meter = instrument_sqlite(path)
        run = Run("pages")
        one_at_a_time(f"sqlite:///{path}", meter, run, count=args.one, warmup=args.warmup)
        return run
    u = sa.make_url(args.url)
    pg = PgMeter(libpq(str(u.set(database="postgres"))), str(u.database))
    run = Run("bytes")
    try:
        if args.workload == "pg-one":
            one_at_a_time(args.url, pg, run, count=args.one, warmup=args.warmup)
        elif args.workload == "pg-workers":
            pg_workers(args.url, pg, run, sagas=args.many, workers=args.workers,
                       concurrency=args.concurrency)
        else:
            pg_recover(args.url, pg, run, sagas=args.recover, concurrency=args.concurrency,
                       lease=args.lease)
    finally:
        pg.close()
    run.warnings += pg.notes
    if pg.unsettled:
        run.warnings.append(f"{pg.unsettled} reading(s) taken with clients still connected: "
                            "their latest commits may be missing")
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Run one workload and print its figures as ``RESULT {json}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workload", choices=WORKLOADS, required=True)
    parser.add_argument("--url", required=True,
                        help="PostgreSQL: SQLAlchemy URL of a fresh database; SQLite: a file path")
    parser.add_argument("--one", type=int, default=300, help="sagas timed one at a time, per mode")
    parser.add_argument("--warmup", type=int, default=30, help="sagas run before timing, per mode")
    parser.add_argument("--many", type=int, default=6000, help="backlog drained by the workers")
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=64, help="sagas each worker drives at once")
    parser.add_argument("--recover", type=int, default=1000, help="sagas left in flight by killed workers")
    parser.add_argument("--lease", type=float, default=2.0, help="lease of the workers that get killed")
    args = parser.parse_args(argv)
    strays = pinned()
    if strays:
        raise SystemExit(f"saga modules from outside {os.environ[TREE_VARIABLE]}: {strays}")
    run = measure(args)
    strays = pinned()
    if strays:
        raise SystemExit(f"saga modules from outside {os.environ[TREE_VARIABLE]}: {strays}")
    result: dict[str, Any] = {
        "figures": run.figures, "warnings": run.warnings, "package": saga.__file__,
        "other_commits": run.other_commits, "databases_created": run.databases_created,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

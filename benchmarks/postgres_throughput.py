"""Throughput and recovery of a 3-step saga on PostgreSQL, beside the raw rates of the same server.

Prints, in one run, on a database of its own (created, and dropped at the end):

- the raw rates of the server through plain psycopg: single-row
  insert+commit on one connection, and 100-row batches (one commit each);
- sagas/s and steps/s for sagas run one at a time in one process, as
  ``coordinator.execute(...)`` and as ``coordinator.start(...)`` then
  ``coordinator.run(...)``, each also as a percentage of the raw single-row rate
  measured just before and just after it (their mean);
- sagas/s and steps/s with 1, 2 and 4 worker processes (real subprocesses
  running ``Coordinator.work``) driving a backlog of started sagas at once;
- the time to finish 1,000 sagas left in flight by workers killed with
  SIGKILL (each saga's second step was running), measured from the restart
  of one worker, once the dead workers' leases have expired.

    python benchmarks/postgres_throughput.py
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql

from saga import Coordinator, EventStore, Retry, Saga, SagaStatus, StepContext

STEPS = 3
SAGA = "bench-trip"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432"
HANG = "SAGA_BENCH_HANG"
"""Environment variable: a worker whose second step blocks forever (to be killed mid-saga)."""


def build_saga() -> Saga:
    """A 3-step saga whose steps succeed at once with a small result, each with a compensation."""
    saga = Saga(SAGA, version=1)
    retry = Retry.exponential(initial=0.1, maximum=5.0, multiplier=2.0, attempts=5, jitter=True)
    hang = os.environ.get(HANG) == "1"
    blocked = threading.Event()

    def make(n: int) -> None:
        def step(ctx: StepContext) -> dict[str, Any]:
            if hang and n == 2:
                blocked.wait()  # never set: this worker is killed while it waits
            return {"booking": f"{ctx.saga_id}-{n}", "attempt": ctx.attempt}

        def undo(ctx: StepContext) -> None:
            return None

        saga.step(name=f"step{n}", retry=retry, timeout=10.0)(step).compensate(undo)

    for n in range(1, STEPS + 1):
        make(n)
    return saga


# -- databases ---------------------------------------------------------------------------------


def libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq connection URI."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def scratch_database(base_url: str, name: str) -> Iterator[str]:
    """A fresh database called ``name`` on the server of ``base_url``; dropped afterwards."""
    admin = libpq(str(sa.make_url(base_url).set(database="postgres")))

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    drop()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield str(sa.make_url(base_url).set(database=name).render_as_string(hide_password=False))
    finally:
        drop()


def raw_rates(url: str, *, count: int, batch: int) -> tuple[float, float]:
    """Single-row insert+commit per second, and rows per second in ``batch``-row commits."""
    with psycopg.connect(libpq(url)) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw")
        conn.execute("CREATE TABLE bench_raw (id bigserial PRIMARY KEY, v text NOT NULL)")
        conn.commit()
        t0 = time.perf_counter()
        for i in range(count):
            conn.execute("INSERT INTO bench_raw (v) VALUES (%s)", (f"row-{i}",))
            conn.commit()
        single = count / (time.perf_counter() - t0)
        batches = max(1, count // batch)
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            for b in range(batches):
                cur.executemany("INSERT INTO bench_raw (v) VALUES (%s)",
                                [(f"batch-{b}-{i}",) for i in range(batch)])
                conn.commit()
        rows = batches * batch / (time.perf_counter() - t0)
        conn.execute("DROP TABLE bench_raw")
        conn.commit()
    return single, rows


# -- one at a time -----------------------------------------------------------------------------


def one_at_a_time(url: str, *, count: int, warmup: int, mode: str = "execute") -> float:
    """Sagas per second, each run to completion before the next: with ``coordinator.execute``
    (``mode="execute"``), or ``coordinator.start`` then ``coordinator.run`` (``"start+run"``)."""
    store = EventStore(url)
    coordinator = Coordinator(store, sagas=[build_saga()])

    def one(saga_id: str) -> SagaStatus:
        if mode == "execute":
            return coordinator.execute(SAGA, {"city": "Oslo"}, saga_id=saga_id).status
        coordinator.start(SAGA, {"city": "Oslo"}, saga_id=saga_id)
        return coordinator.run(saga_id).status

    try:
        for i in range(warmup):
            one(f"warm-{mode}-{i}")
        t0 = time.perf_counter()
        for i in range(count):
            status = one(f"one-{mode}-{i}")
            if status is not SagaStatus.COMPLETED:
                raise RuntimeError(f"saga one-{mode}-{i} ended {status}")
        return count / (time.perf_counter() - t0)
    finally:
        coordinator.close()
        store.close()


# -- worker processes --------------------------------------------------------------------------


def start_sagas(url: str, prefix: str, count: int, *, threads: int = 8) -> None:
    """Start ``count`` sagas (not driven) from a few threads."""
    store = EventStore(url)
    coordinator = Coordinator(store, sagas=[build_saga()])

    def part(k: int) -> None:
        for i in range(k, count, threads):
            coordinator.start(SAGA, {"city": "Oslo"}, saga_id=f"{prefix}-{i}")

    pool = [threading.Thread(target=part, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    coordinator.close()
    store.close()


class Workers:
    """Worker subprocesses: each starts, says ``ready``, drives sagas after ``go``, stops at EOF."""

    def __init__(self, url: str, count: int, *, concurrency: int, lease: float, hang: bool = False
                 ) -> None:
        env = dict(os.environ)
        if hang:
            env[HANG] = "1"
        else:
            env.pop(HANG, None)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", url,
               "--concurrency", str(concurrency), "--lease", str(lease)]
        self.procs = [
            subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
            for _ in range(count)
        ]

    def ready(self, timeout: float = 60.0) -> None:
        for p in self.procs:
            assert p.stdout is not None
            ready, _, _ = select.select([p.stdout], [], [], timeout)
            line = p.stdout.readline() if ready else ""
            if line.strip() != "ready":
                self.kill()
                raise RuntimeError(f"worker {p.pid} did not start (said {line!r})")

    def go(self) -> None:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()

    def stop(self, timeout: float = 30.0) -> None:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.close()
        for p in self.procs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
        for p in self.procs:
            p.wait()


def worker_main(url: str, *, concurrency: int, lease: float) -> int:
    """Run in a worker subprocess: drive due sagas from ``go`` until stdin closes."""
    store = EventStore(url)
    coordinator = Coordinator(store, sagas=[build_saga()], lease=lease, poll_interval=0.05)
    stop = threading.Event()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1

    def watch() -> None:
        sys.stdin.read()  # returns at EOF: the parent is done with us
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    coordinator.work(concurrency=concurrency, stop=stop)
    coordinator.close()
    store.close()
    return 0


def count_where(url: str, where: str) -> int:
    """How many sagas match ``where`` (plain SQL on the sagas table)."""
    with psycopg.connect(libpq(url)) as conn:
        row = conn.execute(f"SELECT count(*) FROM sagas WHERE {where}").fetchone()
    return 0 if row is None else int(row[0])


def wait_for(url: str, where: str, target: int, *, timeout: float, poll: float = 0.01) -> float:
    """Poll until ``target`` sagas match ``where``; returns the time it happened (perf_counter)."""
    deadline = time.perf_counter() + timeout
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        while True:
            row = conn.execute(f"SELECT count(*) FROM sagas WHERE {where}").fetchone()
            now = time.perf_counter()
            if row is not None and int(row[0]) >= target:
                return now
            if now > deadline:
                raise RuntimeError(f"only {row[0] if row else 0} of {target} sagas reached {where!r}")
            time.sleep(poll)


def many_at_once(url: str, *, workers: int, sagas: int, concurrency: int) -> float:
    """Sagas per second when ``workers`` processes drive a backlog of ``sagas`` started sagas."""
    prefix = f"w{workers}"
    start_sagas(url, prefix, sagas)
    pool = Workers(url, workers, concurrency=concurrency, lease=30.0)
    try:
        pool.ready()
        done_before = count_where(url, "status = 'completed'")
        t0 = time.perf_counter()
        pool.go()
        t1 = wait_for(url, "status = 'completed'", done_before + sagas, timeout=600)
    finally:
        pool.stop()
    return sagas / (t1 - t0)


def recovery(url: str, *, sagas: int, concurrency: int, lease: float) -> tuple[float, float]:
    """Seconds to finish ``sagas`` sagas whose workers were SIGKILLed mid-step, from one restart.

    Returns (seconds, how long the dead workers' leases took to expire after the kill).
    """
    prefix = "rec"
    start_sagas(url, prefix, sagas)
    # Workers (two, unless there are few sagas) take every saga as far as its second step,
    # which blocks; then they die.
    n = 2 if sagas >= 100 else 1
    doomed = Workers(url, n, concurrency=-(-sagas // n), lease=lease, hang=True)
    try:
        doomed.ready()
        doomed.go()
        wait_for(url, f"saga_id LIKE '{prefix}-%' AND last_seq = 4", sagas, timeout=300)
    finally:
        doomed.kill()
    killed = time.perf_counter()
    # A restarted worker cannot take a saga before its lease expires: wait that out first,
    # so that the figure is the recovery work itself.
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT max(lease_expires_at) - extract(epoch from clock_timestamp()) FROM sagas"
        ).fetchone()
    time.sleep(max(0.0, float(row[0] if row and row[0] is not None else 0.0)) + 0.05)
    expired = time.perf_counter() - killed
    t0 = time.perf_counter()
    survivor = Workers(url, 1, concurrency=concurrency, lease=30.0)
    try:
        survivor.ready()
        survivor.go()
        t1 = wait_for(url, f"saga_id LIKE '{prefix}-%' AND status = 'completed'", sagas, timeout=600)
    finally:
        survivor.stop()
    return t1 - t0, expired


# -- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", default=os.environ.get("SAGA_BENCH_POSTGRES_URL", DEFAULT_URL),
                        help="server URL (the database part is replaced)")
    parser.add_argument("--database", default="saga_bench", help="scratch database (dropped after)")
    parser.add_argument("--one", type=int, default=1000, help="sagas run one at a time")
    parser.add_argument("--warmup", type=int, default=50, help="sagas run before timing")
    parser.add_argument("--many", type=int, default=3000, help="sagas per worker-process run")
    parser.add_argument("--workers", default="1,2,4", help="worker-process counts to run")
    parser.add_argument("--concurrency", type=int, default=64, help="sagas each worker drives at once")
    parser.add_argument("--recover", type=int, default=1000, help="sagas left in flight by killed workers")
    parser.add_argument("--lease", type=float, default=2.0, help="lease of the workers that get killed")
    parser.add_argument("--raw", type=int, default=3000, help="rows for each raw rate")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, concurrency=args.concurrency, lease=args.lease)
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    if min(args.one, args.many, args.raw, args.concurrency, *counts) < 1 or args.recover < 2:
        parser.error("counts must be at least 1 (--recover at least 2)")

    out = sys.stdout
    with scratch_database(args.url, args.database) as url:
        single, rows = raw_rates(url, count=args.raw, batch=100)
        print(f"raw insert+commit, one connection:  {single:>8,.0f} commits/s", file=out)
        print(f"raw 100-row batches, one connection: {rows:>8,.0f} rows/s "
              f"({rows / 100:,.0f} commits/s)", file=out)
        # Each mode's share of raw is against the raw rate measured just before and just
        # after it, so that a machine whose disk speeds up or slows down meanwhile does not
        # skew the ratio.
        before = single
        for mode in ("execute", "start+run"):
            rate = one_at_a_time(url, count=args.one, warmup=args.warmup, mode=mode)
            after, _ = raw_rates(url, count=args.raw, batch=100)
            raw = (before + after) / 2
            print(f"one at a time, {mode + ',':<10} 1 process: {rate:>8,.0f} sagas/s "
                  f"{rate * STEPS:>8,.0f} steps/s ({args.one} sagas; "
                  f"{100 * rate / raw:.1f}% of raw {raw:,.0f}: {before:,.0f} before, "
                  f"{after:,.0f} after)", file=out)
            before = after
        for n in counts:
            rate = many_at_once(url, workers=n, sagas=args.many, concurrency=args.concurrency)
            print(f"{n} worker process{'es' if n > 1 else '  '} x {args.concurrency:<3} at once:   "
                  f"{rate:>8,.0f} sagas/s {rate * STEPS:>8,.0f} steps/s ({args.many} sagas)", file=out)
        seconds, expired = recovery(url, sagas=args.recover, concurrency=args.concurrency,
                                    lease=args.lease)
        print(f"recovery of {args.recover} sagas killed mid-step: {seconds:.2f} s from the restart "
              f"of one worker (leases of {args.lease:g}s expired {expired:.2f}s after the kill)",
              file=out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

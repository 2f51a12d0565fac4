"""One measured run of DBOS (the same 3-step workload as ``saga_workloads.py``), for ``against_dbos.py``.

Runs in a virtual environment holding DBOS (``against_dbos.py`` makes it) and
prints one line ``RESULT {json}``, the figures named as ``saga_workloads.py``
names ours. The workload, as a DBOS user would write it: a
``@DBOS.workflow()`` calling three ``@DBOS.step()`` functions, each returning
a small dict, each with retries like our saga's steps (5 attempts, 0.1 s
doubling). DBOS has no compensations, and a step timeout only for async steps,
so the steps have neither; on the success path nothing runs them anyway.

- ``sqlite-one``, ``pg-one``: workflows one at a time. ``execute`` calls the
  workflow function (DBOS runs it durably in the caller's thread);
  ``start+run`` is ``DBOS.start_workflow(...)`` then ``handle.get_result()``.
- ``pg-workers``: a backlog of workflows enqueued on a DBOS queue (by a
  process that does not dequeue), drained by one DBOS process whose queue has
  ``worker_concurrency`` threads (``--threads``) polling every ``--poll``
  seconds (DBOS's default is 1 s; a queue dequeues only when it polls).
  Timed from the drainer's ``DBOS.launch()`` to the last workflow's success.
- ``pg-recover``: workflows started by a process whose second step blocks,
  which is SIGKILLed once every workflow has finished its first step; then
  a restarted process (same executor id and application version) recovers
  them when it launches. Timed from the restart to the last success.

Commits and WAL per workflow are counted as for ours (``benchmarks/meters.py``).
DBOS leaves SQLite in rollback-journal mode (it sets no ``journal_mode``), so
its WAL pages are not counted there.

    ~/.cache/saga-benchmarks/dbos-3.4.0/bin/python benchmarks/dbos_workloads.py --workload pg-one --url ...
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks.*`` importable
    sys.path.append(str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from benchmarks.meters import Cost, Drain, Meter, PgMeter, Run, SqliteMeter, instrument_sqlite

WORKLOADS = ("pg-workers", "sqlite-one", "pg-one", "pg-recover")
APP = "saga-bench"
QUEUE = "bench"
HANG = "SAGA_BENCH_HANG"
"""Environment variable: a process whose second step blocks forever (to be killed mid-workflow)."""
STEPS = 3


def libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq connection URI."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def load() -> Any:
    """The ``dbos`` package (imported by name: the project's own checks run without it)."""
    return importlib.import_module("dbos")


def define(dbos: Any) -> Callable[[str], dict[str, Any]]:
    """Register the 3-step workflow (named, so that another process finds it) and return it."""
    hang = os.environ.get(HANG) == "1"
    blocked = threading.Event()

    def make(n: int) -> Callable[[str], dict[str, Any]]:
        def step(trip_id: str) -> dict[str, Any]:
            if hang and n == 2:
                blocked.wait()  # never set: this process is killed while it waits
            return {"booking": f"{trip_id}-{n}", "attempt": 1}

        decorate = dbos.DBOS.step(name=f"step{n}", retries_allowed=True, max_attempts=5,
                                  interval_seconds=0.1, backoff_rate=2.0)
        registered: Callable[[str], dict[str, Any]] = decorate(step)
        return registered

    steps = [make(n) for n in range(1, STEPS + 1)]

    def trip(trip_id: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for step in steps:
            result = step(trip_id)
        return result

    workflow: Callable[[str], dict[str, Any]] = dbos.DBOS.workflow(name="trip")(trip)
    return workflow


def launch(dbos: Any, url: str, *, listen: Sequence[str] | None = None) -> None:
    """Construct and launch DBOS on the system database ``url``."""
    config = {"name": APP, "system_database_url": url, "application_version": "bench-1",
              "log_level": "WARNING"}
    dbos.DBOS(config=config)
    if listen is not None:
        dbos.DBOS.listen_queues(list(listen))
    dbos.DBOS.launch()


# -- one at a time -----------------------------------------------------------------------------


def cycle(dbos: Any, url: str, meter: Meter, body: Callable[[], None]) -> tuple[float, Cost]:
    """Launch DBOS, time ``body``, destroy DBOS; the seconds, and the counters from before the
    launch to the end (see :class:`benchmarks.meters.Meter`)."""
    before = meter.read()
    launch(dbos, url)
    try:
        t0 = time.perf_counter()
        body()
        seconds = time.perf_counter() - t0
        during = meter.read() if meter.reads_open else None
    finally:
        dbos.DBOS.destroy()
    after = during if during is not None else meter.read()
    return seconds, meter.cost(before, after)


def one_at_a_time(dbos: Any, url: str, meter: Meter, run: Run, *, count: int, warmup: int) -> None:
    """Both modes: a warm-up, an empty launch and destroy (its cost is taken off), the timed run."""
    workflow = define(dbos)

    def drive(mode: str, prefix: str, n: int) -> Callable[[], None]:
        def body() -> None:
            for i in range(n):
                trip_id = f"{prefix}-{i}"
                with dbos.SetWorkflowID(trip_id):
                    if mode == "execute":
                        workflow(trip_id)
                    else:
                        dbos.DBOS.start_workflow(workflow, trip_id).get_result()

        return body

    for mode in ("start+run", "execute"):
        if warmup:
            cycle(dbos, url, meter, drive(mode, f"warm-{mode}", warmup))
        _, idle = cycle(dbos, url, meter, lambda: None)
        seconds, cost = cycle(dbos, url, meter, drive(mode, f"one-{mode}", count))
        run.add(mode, count, seconds, cost, idle)


# -- processes ---------------------------------------------------------------------------------


class Process:
    """This script in another process, in a role: says ``ready``, acts after ``go``, stops at EOF."""

    def __init__(self, role: str, url: str, args: Sequence[str] = (), *, hang: bool = False) -> None:
        env = dict(os.environ)
        if hang:
            env[HANG] = "1"
        else:
            env.pop(HANG, None)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--role", role, "--url", url, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )

    def ready(self, timeout: float = 120.0) -> None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.kill()
            raise RuntimeError(f"process {self.proc.pid} did not start (said {line!r})")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 60.0) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def role_main(role: str, url: str, args: argparse.Namespace) -> int:
    """A process of :class:`Process`: ``drain`` launches DBOS at ``go`` and dequeues;
    ``start`` launches, starts ``--recover`` workflows at ``go`` (and is killed);
    ``recover`` launches at once (recovering what is pending) and says ``ready`` after."""
    dbos = load()
    workflow = define(dbos)
    if role == "recover":
        launch(dbos, url)
        print("ready", flush=True)
    else:
        if role == "start":
            launch(dbos, url)
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        if role == "drain":
            launch(dbos, url)
            register_queue(dbos, args)
        else:
            for i in range(args.recover):
                dbos.DBOS.start_workflow(workflow, f"rec-{i}")
    sys.stdin.read()  # returns at EOF: the parent is done with us
    dbos.DBOS.destroy()
    return 0


def register_queue(dbos: Any, args: argparse.Namespace) -> Any:
    """The benchmark's queue: ``--threads`` workflows at once per process, polled every
    ``--poll`` seconds."""
    return dbos.DBOS.register_queue(QUEUE, worker_concurrency=args.threads,
                                    polling_interval_sec=args.poll, on_conflict="always_update")


SUCCEEDED = "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'"
SUCCEEDED_FROM_QUEUE = SUCCEEDED + " AND queue_name = 'bench'"


def pg_workers(dbos: Any, url: str, meter: PgMeter, run: Run, *, args: argparse.Namespace) -> None:
    """A backlog of ``--many`` enqueued workflows drained by one DBOS process."""
    workflow = define(dbos)
    launch(dbos, url, listen=[])  # this process only enqueues
    queue = register_queue(dbos, args)

    def part(k: int) -> None:
        for i in range(k, args.many, 8):
            with dbos.SetWorkflowID(f"w-{i}"):
                queue.enqueue(workflow, f"w-{i}")

    threads = [threading.Thread(target=part, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dbos.DBOS.destroy()
    before = meter.read()
    drain = Drain(libpq(url), SUCCEEDED_FROM_QUEUE)
    drainer = Process("drain", url, ["--threads", str(args.threads), "--poll", str(args.poll)])
    try:
        drainer.ready()
        t0 = time.perf_counter()
        drainer.go()
        t1 = drain.wait(args.many, timeout=1800)
    finally:
        drainer.stop()
    run.add("", args.many, t1 - t0, meter.cost(before, meter.read()).less_commits(drain.commits))


def pg_recover(url: str, meter: PgMeter, run: Run, *, args: argparse.Namespace) -> None:
    """``--recover`` workflows whose process was SIGKILLed in their second step, recovered by
    a restarted process."""
    doomed = Process("start", url, ["--recover", str(args.recover)], hang=True)
    try:
        doomed.ready()
        doomed.go()
        first = Drain(libpq(url), "SELECT count(*) FROM dbos.operation_outputs"
                                  " WHERE function_name = 'step1'")
        first.wait(args.recover, timeout=600)
        time.sleep(0.5)  # let each workflow's thread go on into its second step
    finally:
        doomed.kill()
    before = meter.read()
    drain = Drain(libpq(url), SUCCEEDED)
    t0 = time.perf_counter()
    survivor = Process("recover", url)
    try:
        survivor.ready()
        t1 = drain.wait(args.recover, timeout=1800)
    finally:
        survivor.stop()
    run.add("", args.recover, t1 - t0, meter.cost(before, meter.read()).less_commits(drain.commits))


# -- main --------------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> Run:
    """Run the workload ``args.workload``."""
    if args.workload == "sqlite-one":
        path = Path(args.url)
        meter: SqliteMeter = instrument_sqlite(path)
        dbos = load()
        run = Run("")
        one_at_a_time(dbos, f"sqlite:///{path}", meter, run, count=args.one, warmup=args.warmup)
        mode = meter.journal_mode()
        if mode.lower() == "wal":
            run.warnings.append("DBOS's SQLite file is in WAL mode, yet its WAL pages were not "
                                "counted")
        return run
    u = sa.make_url(args.url)
    pg = PgMeter(libpq(str(u.set(database="postgres"))), str(u.database), settle_timeout=20.0)
    run = Run("bytes")
    try:
        if args.workload == "pg-one":
            one_at_a_time(load(), args.url, pg, run, count=args.one, warmup=args.warmup)
        elif args.workload == "pg-workers":
            pg_workers(load(), args.url, pg, run, args=args)
        else:
            pg_recover(args.url, pg, run, args=args)
    finally:
        pg.close()
    run.warnings += pg.notes
    if pg.unsettled:
        run.warnings.append(f"{pg.unsettled} reading(s) taken with DBOS's connections still open: "
                            "their latest commits may be missing")
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Run one workload and print its figures as ``RESULT {json}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workload", choices=WORKLOADS)
    parser.add_argument("--url", required=True,
                        help="PostgreSQL: SQLAlchemy URL of a fresh database; SQLite: a file path")
    parser.add_argument("--one", type=int, default=300, help="workflows timed one at a time, per mode")
    parser.add_argument("--warmup", type=int, default=30, help="workflows run before timing, per mode")
    parser.add_argument("--many", type=int, default=6000, help="backlog drained by the queue")
    parser.add_argument("--threads", type=int, default=8, help="the queue's worker_concurrency")
    parser.add_argument("--poll", type=float, default=0.01, help="the queue's polling interval, s")
    parser.add_argument("--recover", type=int, default=1000, help="workflows left by a killed process")
    parser.add_argument("--role", choices=("drain", "start", "recover"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        return role_main(args.role, args.url, args)
    if not args.workload:
        parser.error("--workload is required")
    run = measure(args)
    result = {"figures": run.figures, "warnings": run.warnings, "package": load().__file__,
              "other_commits": run.other_commits, "databases_created": run.databases_created}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

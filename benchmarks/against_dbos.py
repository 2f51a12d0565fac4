"""Us beside DBOS, as a user would compare them: the same 3-step workload on both, side by side.

Installs DBOS (``dbos==3.4.0``) into a virtual environment of its own under a
cache folder (``--cache``, default ``~/.cache/saga-benchmarks/dbos-3.4.0``;
made on the first run, reused after; never the project's venv), then runs
each workload DBOS, ours, DBOS, ours, ... (``--pairs`` pairs) in one run,
each run a subprocess on a fresh database: DBOS's in the DBOS venv
(``benchmarks/dbos_workloads.py``, whose docstring says how DBOS is driven),
ours in this interpreter's venv on the working tree's ``saga``
(``benchmarks/saga_workloads.py``, pinned as ``against_commit.py`` pins it).

- ``pg-workers``: PostgreSQL, a backlog of ``--many`` workflows drained: ours
  by ``--workers`` worker processes each driving ``--concurrency`` sagas at
  once; DBOS's by one process whose DBOS queue has ``worker_concurrency``
  ``--threads`` (what DBOS offers for running many workflows at once from a
  backlog), polled every ``--poll`` seconds;
- ``sqlite-one``: one at a time on a SQLite file (DBOS's system database as
  ``sqlite:///...``): ``execute`` (ours) against calling the workflow
  function (DBOS), and ``start`` + ``run`` against ``DBOS.start_workflow`` +
  ``get_result``;
- ``pg-one``: the same on PostgreSQL;
- ``recover``: ``--recover`` workflows left mid-step by SIGKILLed processes,
  finished by one restarted process: ours once the dead workers' leases have
  expired; DBOS recovers its executor's pending workflows when it launches.

Prints a table: for each figure, the median over the pairs of each side, the
ratio ours/DBOS, and every pair's figures: workflows (sagas)/s, commits and
WAL per workflow counted from outside both libraries (``benchmarks/meters.py``;
on PostgreSQL both the server's WAL and ``own WAL``, the scratch database's
records alone),
and, after each run on its database, the raw single-row insert+commit rate.

    python benchmarks/against_dbos.py
    python benchmarks/against_dbos.py --only sqlite-one,pg-one --pairs 5
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import venv
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks.*`` importable
    sys.path.append(str(Path(__file__).resolve().parents[1]))

from benchmarks.against_commit import ours, run_once
from benchmarks.postgres_throughput import DEFAULT_URL
from benchmarks.sidebyside import Comparison, Outcome
from benchmarks.trees import ROOT, describe_working_tree, stage

DBOS_VERSION = "3.4.0"
DBOS_SCRIPT = Path(__file__).resolve().with_name("dbos_workloads.py")
WORKLOADS = {"pg-workers": "pg-workers", "sqlite-one": "sqlite-one", "pg-one": "pg-one",
             "recover": "pg-recover"}
"""This benchmark's workload names, and the name each has in the workload scripts."""


def default_cache() -> Path:
    """Where the DBOS venv lives unless told."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "saga-benchmarks" / f"dbos-{DBOS_VERSION}"


def dbos_python(cache: Path) -> Path:
    """The DBOS venv's interpreter, making the venv first if it is missing or unfinished."""
    python = cache / "bin" / "python"
    if installed(python) == DBOS_VERSION:
        return python
    print(f"installing dbos=={DBOS_VERSION} into {cache} (once) ...", file=sys.stderr, flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(cache)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"dbos=={DBOS_VERSION}"],
                   check=True)
    if installed(python) != DBOS_VERSION:
        raise RuntimeError(f"dbos=={DBOS_VERSION} did not install into {cache}")
    return python


def installed(python: Path) -> str | None:
    """The version of dbos the interpreter ``python`` has (None: no such interpreter, or no dbos)."""
    if not python.exists():
        return None
    proc = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def theirs(args: argparse.Namespace, python: Path, workload: str, *, scratch: Path, label: str
           ) -> Outcome:
    """One measured run of ``dbos_workloads.py`` in the DBOS venv."""
    cmd = [str(python), str(DBOS_SCRIPT), "--workload", workload, "--one", str(args.one),
           "--warmup", str(args.warmup), "--many", str(args.many), "--threads", str(args.threads),
           "--poll", str(args.poll), "--recover", str(args.recover)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)  # for benchmarks.meters; nothing there imports saga
    env.pop("PYTHONHOME", None)
    outcome = run_once(cmd, workload, env=env, scratch=scratch, args=args, label=label)
    if not outcome.package.startswith(str(python.parent.parent) + os.sep):
        raise RuntimeError(f"{label} ran dbos from {outcome.package}, not from its venv")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, default=3, help="DBOS/ours pairs of runs per workload")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help=f"comma-separated workloads, of {', '.join(WORKLOADS)}")
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="the DBOS venv (made on the first run)")
    parser.add_argument("--url", default=os.environ.get("SAGA_BENCH_POSTGRES_URL", DEFAULT_URL),
                        help="PostgreSQL server URL (the database part is replaced)")
    parser.add_argument("--database", default="saga_bench_dbos",
                        help="the scratch database (made fresh for each run, dropped after)")
    parser.add_argument("--one", type=int, default=300, help="workflows timed one at a time, per mode")
    parser.add_argument("--warmup", type=int, default=30, help="workflows run before timing, per mode")
    parser.add_argument("--many", type=int, default=6000, help="backlog drained")
    parser.add_argument("--workers", type=int, default=4, help="our worker processes")
    parser.add_argument("--concurrency", type=int, default=64, help="sagas each of our workers drives")
    parser.add_argument("--threads", type=int, default=8, help="DBOS: the queue's worker_concurrency")
    parser.add_argument("--poll", type=float, default=0.01,
                        help="DBOS: the queue's polling interval in seconds (DBOS's default: 1)")
    parser.add_argument("--recover", type=int, default=1000, help="workflows left by killed processes")
    parser.add_argument("--lease", type=float, default=2.0, help="lease of our workers that get killed")
    parser.add_argument("--raw", type=int, default=1000, help="raw insert+commits after each run")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per run")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where our staged package and the SQLite files go (default: temporary)")
    args = parser.parse_args(argv)
    selected = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(selected) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose among {', '.join(WORKLOADS)}")
    if min(args.pairs, args.one, args.many, args.workers, args.concurrency, args.threads,
           args.raw) < 1 or args.recover < 2 or args.warmup < 0 or not args.poll > 0:
        parser.error("counts must be at least 1 (--recover at least 2, --warmup at least 0), "
                     "--poll positive")

    python = dbos_python(args.cache)
    comparison = Comparison("DBOS", "ours")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="saga-against-dbos-") as d:
        tmp = Path(d)
        staged = stage(ROOT, tmp / "ours")
        scratch = tmp / "scratch"
        scratch.mkdir()
        print(f"DBOS: dbos=={DBOS_VERSION} ({python})")
        print(f"ours: {describe_working_tree(ROOT)}")
        sys.stdout.flush()
        for name in selected:
            workload = WORKLOADS[name]
            for pair in range(args.pairs):
                label = f"{name}, pair {pair + 1}/{args.pairs}"
                comparison.add(name, "DBOS", theirs(args, python, workload, scratch=scratch,
                                                    label=f"{label}, DBOS"))
                comparison.add(name, "ours", ours(args, workload, staged=staged, scratch=scratch,
                                                  label=f"{label}, ours"))
    print()
    print(comparison.table())
    notes = comparison.notes()
    if notes:
        print()
        print("\n".join(f"note: {n}" for n in notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

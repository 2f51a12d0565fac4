"""The working tree's ``saga`` against an old commit's, side by side, on the same workloads.

Exports the old commit (default ``f84b104``, ``--old REV``) with ``git
archive``, lays both its ``saga`` package and the working tree's out as
installed (``benchmarks/trees.py``: each subprocess is pinned to its copy and
fails loudly if any ``saga`` module would come from elsewhere), then runs each
workload old, new, old, new, ... (``--pairs`` pairs) in one run, each run a
subprocess of ``benchmarks/saga_workloads.py`` on a fresh database:

- ``pg-workers``: PostgreSQL, a backlog of ``--many`` started sagas drained by
  ``--workers`` worker processes each driving ``--concurrency`` at once;
- ``sqlite-one``: a SQLite file, sagas one at a time, ``start`` + ``run`` and
  ``execute``;
- ``pg-one``: the same on PostgreSQL;
- ``pg-recover``: ``--recover`` sagas left mid-step by SIGKILLed workers,
  finished by one restarted worker once the leases have expired.

Prints a table: for each figure, the median over the pairs of each side, the
ratio new/old, and every pair's figures. The figures are sagas/s, and per
saga the commits and the WAL written (pages on SQLite; on PostgreSQL the
bytes by which the server's WAL position moved, and ``own WAL``: the bytes of
this database's records alone, which another database's work on a shared
server does not inflate), counted from outside the library
(``benchmarks/meters.py``), so that they mean the same on both trees; and,
after each run on its database, the raw rate of single-row insert+commit
(``raw commits/s``), so that a noisy machine shows.
The measured code uses only the public API both commits have.

    python benchmarks/against_commit.py
    python benchmarks/against_commit.py --only sqlite-one,pg-one --pairs 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks.*`` importable
    sys.path.append(str(Path(__file__).resolve().parents[1]))

from benchmarks.postgres_throughput import DEFAULT_URL, raw_rates, scratch_database
from benchmarks.saga_workloads import WORKLOADS
from benchmarks.sidebyside import Comparison, Outcome, run_child
from benchmarks.sqlite_throughput import raw_rate
from benchmarks.trees import ROOT, child_env, describe_commit, describe_working_tree, export, stage

WORKLOAD_SCRIPT = Path(__file__).resolve().with_name("saga_workloads.py")
RAW = "raw commits/s"


def workload_args(args: argparse.Namespace) -> list[str]:
    """The counts a measured run is given."""
    return ["--one", str(args.one), "--warmup", str(args.warmup), "--many", str(args.many),
            "--workers", str(args.workers), "--concurrency", str(args.concurrency),
            "--recover", str(args.recover), "--lease", str(args.lease)]


def run_once(cmd: Sequence[str], workload: str, *, env: dict[str, str], scratch: Path,
             args: argparse.Namespace, label: str) -> Outcome:
    """One measured run (``cmd`` plus ``--url``) of ``workload`` on a fresh database (on
    PostgreSQL ``args.database`` at ``args.url``, else a file in ``scratch``), then the raw
    insert+commit rate of that database (``args.raw`` rows)."""
    if workload == "sqlite-one":
        path = scratch / "bench.db"
        try:
            outcome = run_child([*cmd, "--url", str(path)], env=env, cwd=scratch,
                                timeout=args.timeout, label=label)
            return outcome.with_figure(RAW, raw_rate(path, args.raw))
        finally:
            for leftover in scratch.glob("bench.db*"):
                leftover.unlink()
    with scratch_database(args.url, args.database) as url:
        outcome = run_child([*cmd, "--url", url], env=env, cwd=scratch, timeout=args.timeout,
                            label=label)
        return outcome.with_figure(RAW, raw_rates(url, count=args.raw, batch=100)[0])


def ours(args: argparse.Namespace, workload: str, *, staged: Path, scratch: Path, label: str
         ) -> Outcome:
    """One measured run of ``saga_workloads.py`` on the package staged at ``staged``."""
    cmd = [sys.executable, str(WORKLOAD_SCRIPT), "--workload", workload, *workload_args(args)]
    outcome = run_once(cmd, workload, env=child_env(staged), scratch=scratch, args=args,
                       label=label)
    if not outcome.package.startswith(str(staged) + os.sep):
        raise RuntimeError(f"{label} ran saga from {outcome.package}, not from {staged}")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--old", default="f84b104", help="the commit to compare against")
    parser.add_argument("--repo", type=Path, default=ROOT,
                        help="the repository whose working tree is the new side")
    parser.add_argument("--pairs", type=int, default=3, help="old/new pairs of runs per workload")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help=f"comma-separated workloads, of {', '.join(WORKLOADS)}")
    parser.add_argument("--url", default=os.environ.get("SAGA_BENCH_POSTGRES_URL", DEFAULT_URL),
                        help="PostgreSQL server URL (the database part is replaced)")
    parser.add_argument("--database", default="saga_bench_cmp",
                        help="prefix of the scratch databases (dropped after each run)")
    parser.add_argument("--one", type=int, default=300, help="sagas timed one at a time, per mode")
    parser.add_argument("--warmup", type=int, default=30, help="sagas run before timing, per mode")
    parser.add_argument("--many", type=int, default=6000, help="backlog drained by the workers")
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=64, help="sagas each worker drives at once")
    parser.add_argument("--recover", type=int, default=1000, help="sagas left in flight by killed workers")
    parser.add_argument("--lease", type=float, default=2.0, help="lease of the workers that get killed")
    parser.add_argument("--raw", type=int, default=1000, help="raw insert+commits after each run")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per run")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the exported trees and SQLite files go (default: a temporary folder)")
    args = parser.parse_args(argv)
    selected = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(selected) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose among {', '.join(WORKLOADS)}")
    if min(args.pairs, args.one, args.many, args.workers, args.concurrency, args.raw) < 1 or (
        args.recover < 2 or args.warmup < 0
    ):
        parser.error("counts must be at least 1 (--recover at least 2, --warmup at least 0)")

    comparison = Comparison("old", "new")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="saga-against-") as d:
        tmp = Path(d)
        export(args.repo, args.old, tmp / "old-src")
        staged = {"old": stage(tmp / "old-src", tmp / "old"), "new": stage(args.repo, tmp / "new")}
        scratch = tmp / "scratch"
        scratch.mkdir()
        print(f"old: {describe_commit(args.repo, args.old)}")
        print(f"new: {describe_working_tree(args.repo)}")
        sys.stdout.flush()
        for workload in selected:
            for pair in range(args.pairs):
                for side in ("old", "new"):
                    label = f"{workload}, pair {pair + 1}/{args.pairs}, {side}"
                    comparison.add(workload, side, ours(args, workload, staged=staged[side],
                                                        scratch=scratch, label=label))
    print()
    print(comparison.table())
    notes = comparison.notes()
    if notes:
        print()
        print("\n".join(f"note: {n}" for n in notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``saga simulate`` command's flags and what it prints, for the command line to wire in.

    sagas = load_targets([args.target])
    print(run(choose(sagas, args.name, args.target), args))
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from ..definition import Saga
from ..errors import TargetError
from .plot import check_plot_path, plot
from .report import build_report
from .runner import simulate
from .spec import Scenario

__all__ = ["add_arguments", "choose", "run"]


def _runs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``TARGET NAME --runs N [--seed S] [--fail STEP=P …] [--latency STEP=DIST …]
    [--replicas STEP=N …] [--policy STEP=SPEC …] [--timeout STEP=SECONDS …] [--json]
    [--plot FILE.png]`` to ``p``."""
    p.add_argument("target", metavar="TARGET", help="module or module:attribute")
    p.add_argument("name", metavar="NAME", help="the saga to simulate")
    p.add_argument("--runs", type=_runs, required=True, metavar="N", help="sagas to run")
    p.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="the same seed gives the same figures (default 0)")
    p.add_argument("--fail", action="append", default=[], metavar="STEP=P",
                   help="each call of STEP fails with probability P (retryable)")
    p.add_argument("--latency", action="append", default=[], metavar="STEP=DIST",
                   help="fixed:S | exp:MEAN | lognormal:MU,SIGMA | uniform:A,B (seconds)")
    p.add_argument("--replicas", action="append", default=[], metavar="STEP=N",
                   help="each attempt of STEP tries N replicas in turn")
    p.add_argument("--policy", action="append", default=[], metavar="STEP=SPEC",
                   help="fixed:DELAY,ATTEMPTS | exponential:INITIAL,MAX,ATTEMPTS")
    p.add_argument("--timeout", action="append", default=[], metavar="STEP=SECONDS")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="write the CDF and success-rate charts")


def choose(sagas: Sequence[Saga], name: str, target: str) -> Saga:
    """The newest version of the saga called ``name`` among those ``target`` holds."""
    named = [s for s in sagas if s.name == name]
    if not named:
        found = ", ".join(sorted({s.name for s in sagas}))
        raise TargetError(f"unknown saga {name!r} in {target} (found: {found})")
    return max(named, key=lambda s: s.version)


def run(saga: Saga, args: argparse.Namespace) -> str:
    """Check every flag (and the plot's path) before any run, simulate, write the plot,
    and return what the command prints: the table, or one JSON object with ``--json``."""
    scenario = Scenario.parse(fail=args.fail, latency=args.latency, replicas=args.replicas,
                              policy=args.policy, timeout=args.timeout)
    scenario.check(saga)
    target = None if args.plot is None else check_plot_path(args.plot)
    report = build_report(simulate(saga, scenario, runs=args.runs, seed=args.seed))
    if target is not None:
        plot(report, target)
    if args.json:
        return json.dumps(report.to_json())
    return report.table()

"""The ``saga simulate`` command: its flags, and what it prints.

    add_parser(subparsers)            # saga simulate TARGET NAME --runs N ...
    sagas = load_targets([args.target])
    print(run(choose(sagas, args.name, args.target), args))
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from saga.cli.arguments import positive_int
from saga.cli.targets import load_targets
from saga.definition import Saga
from saga.errors import InvalidInput, TargetError
from saga.simulate.fromlog import LogProfile, read_profile
from saga.simulate.plot import check_plot_path, plot, require_matplotlib
from saga.simulate.report import build_report
from saga.simulate.runner import simulate
from saga.simulate.spec import Scenario
from saga.text import shorten
from saga.timespec import parse_time

__all__ = ["add_arguments", "add_parser", "choose", "command", "run"]


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``TARGET NAME --runs N [--seed S] [--fail STEP=P …] [--latency STEP=DIST …]
    [--replicas STEP=N …] [--policy STEP=SPEC …] [--timeout STEP=SECONDS …]
    [--from-log [--since T]] [--json] [--plot FILE.png]`` to ``p``."""
    p.add_argument("target", metavar="TARGET", help="module or module:attribute")
    p.add_argument("name", metavar="NAME", help="the saga to simulate")
    p.add_argument("--runs", type=positive_int, required=True, metavar="N", help="sagas to run")
    p.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="the same seed gives the same figures (default 0)")
    p.add_argument("--fail", action="append", default=[], metavar="STEP=P",
                   help="each call of STEP fails with probability P (retryable)")
    p.add_argument("--latency", action="append", default=[], metavar="STEP=DIST",
                   help="fixed:S | exp:MEAN | lognormal:MU,SIGMA | uniform:A,B (seconds)")
    p.add_argument("--replicas", action="append", default=[], metavar="STEP=N",
                   help="each attempt of STEP (a Failover or Hedge step) tries N replicas in turn, "
                        "each with its own draws")
    p.add_argument("--policy", action="append", default=[], metavar="STEP=SPEC",
                   help="fixed:DELAY,ATTEMPTS | exponential:INITIAL,MAX,ATTEMPTS")
    p.add_argument("--timeout", action="append", default=[], metavar="STEP=SECONDS",
                   help="each attempt of STEP times out after SECONDS")
    p.add_argument("--from-log", action="store_true",
                   help="take each step's failure rate and attempt durations from the log "
                        "at --db (a --fail or --latency flag wins for its step)")
    p.add_argument("--since", metavar="T", default=None,
                   help="with --from-log: only attempts since T (ISO 8601, or 2h, 7d ago)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="write the CDF and success-rate charts")


def choose(sagas: Sequence[Saga], name: str, target: str) -> Saga:
    """The newest version of the saga called ``name`` among those ``target`` holds."""
    named = [s for s in sagas if s.name == name]
    if not named:
        found = ", ".join(sorted({s.name for s in sagas}))
        raise TargetError(f"unknown saga {shorten(name)!r} in {target} (found: {found})")
    return max(named, key=lambda s: s.version)


def _profile(saga: Saga, args: argparse.Namespace) -> LogProfile | None:
    if not args.from_log:
        if args.since is not None:
            raise InvalidInput("--since needs --from-log")
        return None
    url = getattr(args, "db", None)
    if not url:
        raise InvalidInput("--from-log needs a database (--db URL)")
    since = None if args.since is None else parse_time(args.since, now=datetime.now(UTC),
                                                       option="--since")
    return read_profile(url, saga, since=since)


def run(saga: Saga, args: argparse.Namespace) -> str:
    """Check every flag (and the plot's path) before any run, simulate, write the plot,
    and return what the command prints: the table, or one JSON object with ``--json``.

    With ``--from-log`` the steps' failure rates and latencies come from the
    log at ``args.db`` (see :mod:`.fromlog`); the JSON then holds, under each
    step it read, ``from_log``: what the log says with the failure rate's interval.
    """
    scenario = Scenario.parse(fail=args.fail, latency=args.latency, replicas=args.replicas,
                              policy=args.policy, timeout=args.timeout)
    scenario.check(saga)
    target = None if args.plot is None else check_plot_path(args.plot)
    if target is not None:
        require_matplotlib()
    profile = _profile(saga, args)
    if profile is not None:
        scenario = profile.scenario(scenario)
        scenario.check(saga)
    report = build_report(simulate(saga, scenario, runs=args.runs, seed=args.seed))
    if target is not None:
        plot(report, target)
    if args.json:
        out: dict[str, Any] = report.to_json()
        if profile is not None:
            for name, p in profile.steps.items():
                out["steps"][name]["from_log"] = p.to_json()
        return json.dumps(out)
    if profile is None:
        return report.table()
    return "\n".join([*profile.lines(), "", report.table()])


def command(args: argparse.Namespace) -> int:
    """``saga simulate``: load TARGET, pick NAME, print the report."""
    sagas = load_targets([args.target])
    print(run(choose(sagas, args.name, shorten(args.target)), args))
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``simulate`` command to a command line's subparsers (``func``: :func:`command`)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "simulate", help="run a saga many times with simulated faults, on a virtual clock",
        description="Run a saga's real definition many times on the real coordinator, in memory "
                    "and on a virtual clock, with simulated failures and latencies, and set the "
                    "measured figures (with 95% intervals) beside what the retry policies predict.",
    )
    add_arguments(p)
    p.set_defaults(func=command)
    return p

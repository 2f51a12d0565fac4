"""Two sides of a comparison run in turn as subprocesses, and their figures printed side by side.

Each measured run is a subprocess that prints one line ``RESULT {json}``
(``saga_workloads.py``, ``dbos_workloads.py``); :func:`run_child` reads it,
:class:`Comparison` keeps every run's figures and prints, for each figure, the
median of each side over the pairs, the ratio of the medians, and each pair's
figures.

Imports nothing of ``saga``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one measured run printed."""

    figures: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    other_commits: int = 0
    databases_created: int = 0
    package: str = ""

    def with_figure(self, name: str, value: float) -> Outcome:
        """The same outcome with one more figure, last."""
        return replace(self, figures={**self.figures, name: value})


def printable(text: str) -> str:
    """``text`` from a subprocess, safe to print: control characters escaped, lines kept."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def run_child(cmd: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float, label: str
              ) -> Outcome:
    """Run one measured subprocess and read its ``RESULT`` line; raise with its output's tail
    when it fails."""
    print(f"  {label} ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{label}: no result after {timeout:g} s") from e
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not results:
        tail = "\n".join((proc.stderr + proc.stdout).splitlines()[-30:])
        raise RuntimeError(f"{label} failed (exit {proc.returncode}):\n{printable(tail)}")
    data: dict[str, Any] = json.loads(results[-1][len("RESULT "):])
    return Outcome(
        figures={str(name): float(value) for name, value in data["figures"]},
        warnings=[str(w) for w in data.get("warnings", [])],
        other_commits=int(data.get("other_commits", 0)),
        databases_created=int(data.get("databases_created", 0)),
        package=str(data.get("package", "")),
    )


def median(values: Sequence[float | None]) -> float | None:
    """The median of the values there are (None if none)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def number(value: float | None) -> str:
    """A figure, with as many decimals as its size deserves ("-" for none)."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


class Comparison:
    """Every run's outcome, by workload and side, in the order they ran."""

    def __init__(self, first: str, second: str) -> None:
        self.sides = (first, second)
        self.runs: dict[str, dict[str, list[Outcome]]] = {}

    def add(self, workload: str, side: str, outcome: Outcome) -> None:
        """Keep one run's outcome."""
        self.runs.setdefault(workload, {s: [] for s in self.sides})[side].append(outcome)

    def table(self) -> str:
        """Each figure's medians, ratio (second / first) and pairs, as an aligned table."""
        first, second = self.sides
        head = ["workload", "figure", f"{first} (median)", f"{second} (median)",
                f"{second}/{first}", f"each pair, {first} -> {second}"]
        rows: list[list[str]] = []
        for workload, by_side in self.runs.items():
            names = list(dict.fromkeys(n for o in by_side[first] + by_side[second] for n in o.figures))
            names.sort(key=lambda n: n.startswith("raw "))  # the baselines last
            shown = workload
            for name in names:
                a = [o.figures.get(name) for o in by_side[first]]
                b = [o.figures.get(name) for o in by_side[second]]
                ma, mb = median(a), median(b)
                ratio = f"{mb / ma:.2f}" if ma and mb is not None else "-"
                pairs = "  ".join(f"{number(x)} -> {number(y)}" for x, y in zip(a, b, strict=False))
                rows.append([shown, name, number(ma), number(mb), ratio, pairs])
                shown = ""
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        right = {2, 3, 4}

        def line(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])

    def notes(self) -> list[str]:
        """Warnings the runs gave, and activity of others on the PostgreSQL server."""
        out: list[str] = []
        for workload, by_side in self.runs.items():
            for side, outcomes in by_side.items():
                others = sum(o.other_commits for o in outcomes)
                created = sum(o.databases_created for o in outcomes)
                if others or created:
                    out.append(f"{workload}, {side}: while measuring, the server's other databases "
                               f"committed {others} transaction(s)"
                               + (f", and databases were created during {created} measured part(s)"
                                  if created else "")
                               + "; WAL bytes are the server's, so they include those writes")
                for w in dict.fromkeys(w for o in outcomes for w in o.warnings):
                    out.append(f"{workload}, {side}: {printable(w)}")
        return out

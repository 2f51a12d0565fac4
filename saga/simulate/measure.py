"""Summarising a simulation's runs: each figure with its 95% interval."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean

from saga.simulate.intervals import mean_interval, percentile, percentile_interval, wilson
from saga.simulate.runner import Measurements

__all__ = ["QUANTILES", "Figure", "Summary", "summarise"]

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
RATES = ("completed", "compensated", "failed")


@dataclass(frozen=True, slots=True)
class Figure:
    """A measured figure: its value (``None`` when nothing was measured), its 95%
    interval (a side is ``None`` when the runs cannot bound it) and how many runs it
    is taken over."""

    value: float | None
    ci: tuple[float | None, float | None]
    n: int
    kind: str
    """``rate``, ``mean`` or ``time`` (a percentile in seconds)."""


@dataclass(frozen=True, slots=True)
class Summary:
    """The measured figures of the saga and of each step, by name.

    Saga: ``completed``, ``compensated``, ``failed`` (shares of all runs) and
    ``p50``/``p95``/``p99`` of the time to completion of completed runs. Step
    (over the runs that reached it): ``completed`` (the step succeeded),
    ``failed`` (it gave up), ``compensated`` (it was undone), mean ``attempts``
    and ``backoff`` (seconds waiting between attempts), and the percentiles of
    its time from first start to success.
    """

    saga: dict[str, Figure]
    steps: dict[str, dict[str, Figure]]
    reached: dict[str, int]


def _rate(hits: int, n: int) -> Figure:
    if n == 0:
        return Figure(None, (None, None), 0, "rate")
    return Figure(hits / n, wilson(hits, n), n, "rate")


def _mean(values: list[float]) -> Figure:
    if not values:
        return Figure(None, (None, None), 0, "mean")
    return Figure(fmean(values), mean_interval(values), len(values), "mean")


def _times(values: list[float]) -> dict[str, Figure]:
    ordered = sorted(values)
    out = {}
    for key, q in QUANTILES.items():
        if ordered:
            out[key] = Figure(percentile(ordered, q), percentile_interval(ordered, q),
                              len(ordered), "time")
        else:
            out[key] = Figure(None, (None, None), 0, "time")
    return out


def summarise(m: Measurements) -> Summary:
    """The figures of ``m`` with their intervals."""
    n = len(m.runs)
    saga = {r: _rate(sum(run.status == r for run in m.runs), n) for r in RATES}
    saga.update(_times([run.duration for run in m.runs if run.status == "completed"]))
    steps: dict[str, dict[str, Figure]] = {}
    reached: dict[str, int] = {}
    for s in m.saga.steps:
        runs = [run.steps[s.name] for run in m.runs if s.name in run.steps]
        reached[s.name] = len(runs)
        figures = {
            "completed": _rate(sum(r.succeeded for r in runs), len(runs)),
            "failed": _rate(sum(not r.succeeded for r in runs), len(runs)),
            "compensated": _rate(sum(r.compensated for r in runs), len(runs)),
            "attempts": _mean([float(r.attempts) for r in runs]),
            "backoff": _mean([r.backoff for r in runs]),
        }
        figures.update(_times([r.duration for r in runs if r.succeeded]))
        steps[s.name] = figures
    return Summary(saga, steps, reached)

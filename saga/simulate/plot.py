"""``--plot``: the completion-time CDF and the success rates, as a PNG.

Needs matplotlib, from the optional extra ``plot``
(``pip install 'saga-coordinator[plot]'``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from saga.errors import InvalidInput, SagaError
from saga.text import count

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from saga.simulate.report import Report

__all__ = ["PlotUnavailable", "check_plot_path", "draw", "plot", "require_matplotlib"]


class PlotUnavailable(SagaError):
    """--plot needs matplotlib: pip install 'saga-coordinator[plot]'"""


def require_matplotlib() -> None:
    """Raise :class:`PlotUnavailable` unless matplotlib can be imported (checked before a
    simulation runs, so nothing is wasted)."""
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise PlotUnavailable() from None


def check_plot_path(path: str | os.PathLike[str]) -> Path:
    """The PNG's path, refused with :class:`~saga.InvalidInput` unless it ends in ``.png``
    and its folder exists (checked before a simulation runs, so nothing is wasted)."""
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise InvalidInput(f"--plot {str(p)!r}: the file name must end in .png")
    if not p.parent.is_dir():
        raise InvalidInput(f"--plot {str(p)!r}: no folder {str(p.parent)!r}")
    if p.is_dir():
        raise InvalidInput(f"--plot {str(p)!r} is a folder")
    return p


def plot(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write the report's two charts (see :func:`draw`) to ``path`` as a PNG; returns the path."""
    target = check_plot_path(path)
    draw(report).savefig(target, dpi=100)
    return target


def draw(report: Report) -> Figure:
    """The report's two charts on one matplotlib figure.

    Left: the share of completed sagas done by each time, measured (steps)
    against the model's prediction. Right: each step's success rate and the
    saga's, measured with their 95% intervals beside the predictions.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable() from None

    figure = Figure(figsize=(11, 4.5), layout="constrained")
    cdf_axes, rate_axes = figure.subplots(1, 2)
    m = report.measurements

    measured = sorted(r.duration for r in m.runs if r.status == "completed")
    predicted = report.prediction.times
    if measured:
        n = len(measured)
        cdf_axes.step(measured, [(i + 1) / n for i in range(n)], where="post",
                      label=f"measured ({count(n, 'completed run')})")
    if predicted:
        k = len(predicted)
        stride = max(1, k // 2000)
        xs = [*predicted[::stride], predicted[-1]]
        ys = [(i * stride + 1) / k for i in range(len(xs) - 1)] + [1.0]
        cdf_axes.plot(xs, ys, linestyle="--", label="predicted")
    cdf_axes.set_title("time to completion")
    cdf_axes.set_xlabel("seconds")
    cdf_axes.set_ylabel("share of completed sagas")
    cdf_axes.set_ylim(0, 1.02)
    cdf_axes.grid(alpha=0.3)
    cdf_axes.legend(loc="lower right")

    names, values, lows, highs, expected = [], [], [], [], []
    figures = [(f"step {k}", v["completed"], report.predicted_steps[k]["completed"])
               for k, v in report.summary.steps.items()]
    figures.append(("saga", report.summary.saga["completed"], report.predicted_saga["completed"]))
    for name, f, p in figures:
        if f.value is None:
            continue
        low, high = f.ci
        names.append(name)
        values.append(f.value)
        lows.append(f.value - (low if low is not None else f.value))
        highs.append((high if high is not None else f.value) - f.value)
        expected.append(p)
    positions = list(range(len(names)))
    rate_axes.errorbar(positions, values, yerr=[lows, highs], fmt="o", capsize=4,
                       label="measured, 95% interval")
    rate_axes.scatter(positions, expected, marker="x", color="black", zorder=3, label="predicted")
    rate_axes.set_xticks(positions, names, rotation=20)
    rate_axes.set_title("success rate")
    rate_axes.set_ylabel("share succeeded")
    rate_axes.grid(alpha=0.3)
    rate_axes.legend(loc="lower left")
    figure.suptitle(f"{m.saga.name}: {count(len(m.runs), 'simulated run')}, seed {m.seed}")
    return figure

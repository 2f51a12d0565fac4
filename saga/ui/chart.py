"""The timeline chart's geometry, computed on the server: rows, bars, retry delays, markers.

The template draws what :func:`layout` returns as inline SVG, so the page
needs no chart library. Times come from a timeline as JSON (ISO 8601); x is
in pixels from the chart's left edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["Bar", "Chart", "Delay", "Marker", "Tick", "layout", "rate_bars"]

LABEL_WIDTH = 150
PLOT_WIDTH = 760
ROW_HEIGHT = 34
TOP = 30
MIN_BAR = 3.0


@dataclass(frozen=True, slots=True)
class Bar:
    """One attempt: where it is drawn and what it was (``index``: its place in the whole timeline,
    ``seq``: the event that started it)."""

    index: int
    seq: int
    x: float
    y: float
    width: float
    outcome: str
    compensation: bool
    label: str


@dataclass(frozen=True, slots=True)
class Delay:
    """The wait between a failed attempt and the retry it scheduled (``clipped``: due after the
    chart's end, drawn to its edge)."""

    x: float
    y: float
    width: float
    seconds: float
    clipped: bool = False


@dataclass(frozen=True, slots=True)
class Marker:
    """An operator's action, drawn across every row at its time."""

    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Tick:
    """A label on the time axis."""

    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Everything the template draws."""

    width: int
    height: int
    rows: list[tuple[float, str]]
    bars: list[Bar]
    delays: list[Delay]
    markers: list[Marker]
    ticks: list[Tick]


def _at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def _seconds(span: float) -> str:
    if span >= 120:
        return f"{span / 60:.1f} min"
    if span >= 1 or span == 0:
        return f"{span:.1f} s"
    return f"{span * 1000:.0f} ms"


def layout(data: dict[str, Any], *, now: datetime) -> Chart:
    """The chart of a timeline (``saga show --json``'s shape): one row per step in the order
    steps first ran, each attempt a bar (a running one ends at ``now``), each retry's delay
    a segment from the failure to when the retry was due, each operator action a marker."""
    attempts: list[dict[str, Any]] = data["attempts"]
    steps: list[str] = []
    for a in attempts:
        if a["step"] not in steps:
            steps.append(a["step"])
    # The axis spans what happened; a retry due later than that (one a cancel made moot, or one
    # still waited for) is drawn to the right edge, so a ten-minute wait does not squash the rest.
    times: list[datetime] = []
    for a in attempts:
        times += [t for t in (_at(a["started_at"]), _at(a["ended_at"])) if t]
    times += [t for t in (_at(o["at"]) for o in data["operator_actions"]) if t]
    if any(a["outcome"] == "running" for a in attempts):
        times.append(now)
    start = min(times) if times else now
    span = max((max(times) - start).total_seconds(), 1e-3) if times else 1.0

    def x(at: datetime) -> float:
        return LABEL_WIDTH + (at - start).total_seconds() / span * PLOT_WIDTH

    row_y = {step: TOP + i * ROW_HEIGHT for i, step in enumerate(steps)}
    bars: list[Bar] = []
    delays: list[Delay] = []
    for i, a in enumerate(attempts):
        began = _at(a["started_at"]) or _at(a["ended_at"]) or start
        ended = _at(a["ended_at"]) or now
        y = row_y[a["step"]] + (ROW_HEIGHT / 2 if a["compensation"] else 4)
        kind = "compensation" if a["compensation"] else "attempt"
        label = f"{a['step']} {kind} {a['attempt']}: {a['outcome'].replace('_', ' ')}"
        bars.append(Bar(a.get("index", i), a.get("seq", 0), x(began), y,
                        max(MIN_BAR, x(ended) - x(began)), a["outcome"],
                        a["compensation"], label))
        due = _at(a["next_attempt_at"])
        if due is not None and a["ended_at"] is not None:
            right = min(x(due), LABEL_WIDTH + PLOT_WIDTH)
            delays.append(Delay(x(ended), y + ROW_HEIGHT / 4 - 2, max(0.0, right - x(ended)),
                                (due - ended).total_seconds(), clipped=x(due) > right))
    markers = [Marker(x(at), f"{o['type']}" + (f" by {o['by']}" if o.get("by") else ""))
               for o in data["operator_actions"] if (at := _at(o["at"])) is not None]
    ticks = [Tick(LABEL_WIDTH + f * PLOT_WIDTH, "+" + _seconds(span * f)) for f in (0, 0.25, 0.5, 0.75, 1)]
    height = TOP + max(1, len(steps)) * ROW_HEIGHT + 24
    return Chart(LABEL_WIDTH + PLOT_WIDTH + 30, height, [(row_y[s], s) for s in steps],
                 bars, delays, markers, ticks)


def rate_bars(steps: dict[str, dict[str, Any]], *, width: int = 400) -> list[tuple[str, float, float]]:
    """``(step key, failure rate, bar width in pixels)`` per step, worst first."""
    ranked = sorted(steps.items(), key=lambda kv: (-kv[1]["failure_rate"], kv[0]))
    return [(key, f["failure_rate"], max(1.0, f["failure_rate"] * width) if f["failure_rate"] else 0.0)
            for key, f in ranked]

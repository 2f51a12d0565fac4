"""The simulation's report: measured figures beside the predictions, as a table or JSON,
with every disagreement beyond the interval named and explained."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from saga.simulate.measure import QUANTILES, Figure, Summary, summarise
from saga.simulate.predict import Effect, SagaPrediction, predict
from saga.simulate.runner import Measurements
from saga.text import count

__all__ = ["Disagreement", "Report", "build_report"]

# measured and predicted times differ by the microseconds the clock rounds each step to
_TIME_TOLERANCE = 1e-5
_CHANCE = ("no effect the formulas ignore applies here: with many figures about 1 in 20 "
           "falls outside its 95% interval by chance")


@dataclass(frozen=True, slots=True)
class Disagreement:
    """A prediction outside its measured interval, and the effects that may explain it."""

    figure: str
    measured: float
    ci: tuple[float | None, float | None]
    predicted: float
    reasons: list[Effect]

    def to_json(self) -> dict[str, Any]:
        """As JSON: the figure's path, the numbers, and each reason's name and explanation."""
        return {
            "figure": self.figure,
            "measured": self.measured,
            "ci": list(self.ci),
            "predicted": self.predicted,
            "reasons": [{"effect": e.name, "why": e.why} for e in self.reasons] or
                       [{"effect": "chance", "why": _CHANCE}],
        }


def inside(figure: Figure, predicted: float) -> bool:
    """Whether ``predicted`` lies in the figure's interval (a missing side is unbounded)."""
    low, high = figure.ci
    tolerance = _TIME_TOLERANCE if figure.kind != "rate" else 1e-12
    if low is not None and predicted < low - tolerance:
        return False
    return high is None or predicted <= high + tolerance


def _predicted_saga(p: SagaPrediction) -> dict[str, float]:
    out = {"completed": p.completed, "compensated": p.compensated, "failed": p.failed}
    out.update({k: p.quantile(q) for k, q in QUANTILES.items()})
    return out


def _predicted_steps(p: SagaPrediction) -> dict[str, dict[str, float]]:
    return {
        name: {
            "completed": s.success,
            "failed": 1.0 - s.success,
            "compensated": s.compensated,
            "attempts": s.expected_attempts,
            "backoff": s.expected_backoff,
            **{k: s.quantile(q) for k, q in QUANTILES.items()},
        }
        for name, s in p.steps.items()
    }


def _reasons(effects: list[Effect], step: str | None, figure: Figure) -> list[Effect]:
    out = []
    for e in effects:
        if e.times_only and figure.kind == "rate":
            continue
        if step is None or e.step is None or e.step == step:
            out.append(e)
    return out


@dataclass(frozen=True, slots=True)
class Report:
    """A simulation's measured figures beside its predictions."""

    measurements: Measurements
    summary: Summary
    prediction: SagaPrediction

    @property
    def predicted_saga(self) -> dict[str, float]:
        """The predicted saga figures, keyed like :attr:`Summary.saga`."""
        return _predicted_saga(self.prediction)

    @property
    def predicted_steps(self) -> dict[str, dict[str, float]]:
        """The predicted step figures, keyed like :attr:`Summary.steps`."""
        return _predicted_steps(self.prediction)

    def comparisons(self) -> list[tuple[str, Figure, float]]:
        """Every measured figure that has a prediction: ``(path, figure, predicted)``."""
        out = []
        saga = self.predicted_saga
        for key, figure in self.summary.saga.items():
            out.append((f"saga.{key}", figure, saga[key]))
        steps = self.predicted_steps
        for name, figures in self.summary.steps.items():
            for key, figure in figures.items():
                out.append((f"steps.{name}.{key}", figure, steps[name][key]))
        return [c for c in out if c[1].value is not None and not math.isnan(c[2])]

    def disagreements(self) -> list[Disagreement]:
        """The predictions outside their measured interval, each with its likely reasons."""
        out = []
        for path, figure, predicted in self.comparisons():
            if inside(figure, predicted):
                continue
            step = path.split(".")[1] if path.startswith("steps.") else None
            assert figure.value is not None
            out.append(Disagreement(path, figure.value, figure.ci, predicted,
                                    _reasons(self.prediction.effects, step, figure)))
        return out

    def to_json(self) -> dict[str, Any]:
        """One object: ``runs``, ``seed``, ``saga`` and ``steps``; each of the saga and
        its steps holds ``measured`` (every figure with ``value``, ``ci`` and ``n``) and
        ``predicted``; the saga also lists the ``disagreements`` and ``ignored_effects``.
        A figure that cannot be given (a percentile of no completed runs) is ``null``."""
        out: dict[str, Any] = _finite(self._json())
        return out

    def _json(self) -> dict[str, Any]:
        m = self.measurements
        step_predictions = self.predicted_steps
        return {
            "runs": len(m.runs),
            "seed": m.seed,
            "saga": {
                "name": m.saga.name,
                "measured": {k: _figure(f) for k, f in self.summary.saga.items()},
                "predicted": self.predicted_saga,
                "disagreements": [d.to_json() for d in self.disagreements()],
                "ignored_effects": [{"effect": e.name, "step": e.step, "why": e.why}
                                    for e in self.prediction.effects],
            },
            "steps": {
                name: {
                    "reached": self.summary.reached[name],
                    "measured": {k: _figure(f) for k, f in figures.items()},
                    "predicted": {
                        **step_predictions[name],
                        "attempt_failure": self.prediction.steps[name].attempt_failure,
                        "worst_backoff": self.prediction.steps[name].worst_backoff,
                        "reached": self.prediction.steps[name].reached,
                    },
                }
                for name, figures in self.summary.steps.items()
            },
        }

    def table(self) -> str:
        """The report as text: one row per figure, then the disagreements explained."""
        m = self.measurements
        disagree = {d.figure for d in self.disagreements()}
        lines = [f"{m.saga.name}: {count(len(m.runs), 'run')}, seed {m.seed} "
                 f"(simulated in {m.seconds:.1f}s of real time)", ""]
        header = f"  {'':<14}{'measured':>10}  {'95% interval':<22}{'predicted':>10}"

        def rows(prefix: str, figures: dict[str, Figure], predicted: dict[str, float]) -> None:
            lines.append(header)
            for key, f in figures.items():
                label = key + (" (s)" if f.kind == "time" or key == "backoff" else "")
                mark = " <- outside" if f"{prefix}.{key}" in disagree else ""
                lines.append(f"  {label:<14}{_num(f.value):>10}  {_interval(f.ci):<22}"
                             f"{_num(predicted.get(key)):>10}{mark}")

        lines.append("saga")
        rows("saga", self.summary.saga, self.predicted_saga)
        steps = self.predicted_steps
        for name, figures in self.summary.steps.items():
            p = self.prediction.steps[name]
            lines += ["", f"step {name}: reached in {count(self.summary.reached[name], 'run')}; "
                      f"each attempt fails with {p.attempt_failure:.4g}"]
            rows(f"steps.{name}", figures, steps[name])
        lines.append("")
        found = self.disagreements()
        if not found:
            lines.append("Every prediction lies inside its measured 95% interval.")
        for d in found:
            lines.append(f"{d.figure}: measured {_num(d.measured)} {_interval(d.ci)}, "
                         f"predicted {_num(d.predicted)}")
            for e in d.reasons:
                lines.append(f"  {e.name}: {e.why}")
            if not d.reasons:
                lines.append(f"  {_CHANCE}")
        if self.prediction.effects:
            lines += ["", "The formulas ignore: " + "; ".join(
                sorted({e.name for e in self.prediction.effects}))]
        return "\n".join(lines)


def _finite(value: Any) -> Any:
    """``value`` with every NaN replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _figure(f: Figure) -> dict[str, Any]:
    return {"value": f.value, "ci": list(f.ci), "n": f.n}


def _num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.4g}"


def _interval(ci: tuple[float | None, float | None]) -> str:
    low, high = ci
    return f"[{'-inf' if low is None else f'{low:.4g}'}, {'inf' if high is None else f'{high:.4g}'}]"


def build_report(measurements: Measurements, *, samples: int | None = None) -> Report:
    """Summarise ``measurements`` and set the predictions beside them.

    ``samples`` is how many sagas the prediction's time model draws (by
    default ten times the runs, at least 20,000 and at most 200,000).
    """
    runs = len(measurements.runs)
    count = samples if samples is not None else min(200_000, max(20_000, 10 * runs))
    prediction = predict(measurements.saga, measurements.scenario, seed=measurements.seed,
                         samples=count)
    return Report(measurements, summarise(measurements), prediction)

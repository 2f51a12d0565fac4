"""What the policies predict analytically, and the effects those formulas ignore.

For one step with ``k`` attempts whose attempts each fail with ``q``
(independently): success ``1 - q**k``, expected attempts
``(1 - q**k) / (1 - q)``, expected time backing off ``sum(d_i * q**i)``
over the delays ``d_i`` after attempt ``i`` (worst case ``sum(d_i)``). A call
fails with ``p``; a timeout ``T`` on a latency ``L`` adds ``P(L >= T)``
(independent of ``p``): ``q = 1 - (1 - p)(1 - P(L >= T))``; ``n`` replicas
tried in turn fail together with ``q**n``. The saga completes with the
product over its steps.

The completion-time distribution has no closed form for sums of, say,
lognormal latencies; it is computed from the same independence model by
sampling it (no coordinator involved), and is what the plot's predicted CDF shows.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

from saga.definition import Saga
from saga.policies import Retry
from saga.simulate.intervals import percentile
from saga.simulate.model import CallModel, seeded
from saga.simulate.spec import Scenario

__all__ = ["Effect", "SagaPrediction", "StepPrediction", "nominal_delays", "predict"]

_UNLIMITED_CUTOFF = 1e-12


@dataclass(frozen=True, slots=True)
class Effect:
    """Something the formulas ignore that is present in this simulation.

    ``step`` is ``None`` for the saga as a whole; ``times_only`` effects
    (jitter) change times, not rates.
    """

    name: str
    why: str
    step: str | None = None
    times_only: bool = False


def nominal_delays(retry: Retry, limit: int) -> list[float]:
    """The delays after attempts 1, 2, … (at most ``limit`` of them), without jitter.

    A policy with full jitter waits a random time up to this delay.
    """
    count = limit if retry.attempts is None else min(limit, retry.attempts - 1)
    return [retry.delay(attempt) for attempt in range(1, count + 1)]


def has_jitter(retry: Retry) -> bool:
    """Whether the policy draws its delays at random."""
    return retry.jitter


@dataclass(frozen=True, slots=True)
class StepPrediction:
    """The formulas' figures for one step (rates conditional on the step being reached)."""

    name: str
    attempts_allowed: int | None
    call_failure: float
    timeout_failure: float
    attempt_failure: float
    success: float
    expected_attempts: float
    delays: list[float]
    expected_backoff: float
    worst_backoff: float | None
    reached: float
    compensated: float
    durations: list[float] = field(repr=False)
    """Sorted model samples of the step's time (first start to success)."""

    def quantile(self, q: float) -> float:
        """The model's ``q`` quantile of the step's time."""
        return percentile(self.durations, q)


@dataclass(frozen=True, slots=True)
class SagaPrediction:
    """The formulas' figures for a saga, its steps, and the effects they ignore."""

    completed: float
    compensated: float
    failed: float
    steps: dict[str, StepPrediction]
    times: list[float] = field(repr=False)
    """Sorted model samples of the time to completion of completed sagas."""
    effects: list[Effect]

    def quantile(self, q: float) -> float:
        """The model's ``q`` quantile of the time to completion."""
        return percentile(self.times, q)

    def cdf(self, x: float) -> float:
        """The model's ``P(time to completion <= x)`` among completed sagas."""
        if not self.times:
            return math.nan
        lo, hi = 0, len(self.times)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.times[mid] <= x:
                lo = mid + 1
            else:
                hi = mid
        return lo / len(self.times)


def _attempt_failure(model: CallModel, timeout: float | None) -> tuple[float, float, float]:
    """``(p, P(L >= T), q)`` for one attempt."""
    over = 0.0 if timeout is None else model.latency.reaches(timeout)
    per_replica = 1.0 - (1.0 - model.fail) * (1.0 - over)
    return model.fail, over, per_replica ** model.replicas


def _limit(retry: Retry, q: float) -> int:
    """How many attempts to count: all of them, or (unlimited) until ``q**i`` is negligible."""
    if retry.attempts is not None:
        return retry.attempts
    if q <= 0:
        return 1
    if q >= 1:
        return 10_000
    return max(1, min(10_000, math.ceil(math.log(_UNLIMITED_CUTOFF) / math.log(q))))


def _longest(saga: Saga, scenario: Scenario) -> float:
    """An upper bound on a saga's time going forward (``inf`` when nothing bounds it): every
    step uses every attempt, each lasting its timeout or its longest latency, and every
    retry waits its full delay."""
    total = 0.0
    for s in saga.steps:
        retry = scenario.retry(saga, s.name)
        if retry.attempts is None:
            return math.inf
        timeout = scenario.step_timeout(saga, s.name)
        model = scenario.call(s.name)
        longest = model.latency.longest * model.replicas
        each = longest if timeout is None else min(timeout, longest)
        total += retry.attempts * each + sum(nominal_delays(retry, retry.attempts - 1))
    return total


def _effects(saga: Saga, scenario: Scenario) -> list[Effect]:
    found: list[Effect] = []
    if saga.deadline is not None and _longest(saga, scenario) >= saga.deadline:
        found.append(Effect("deadline", f"the saga's deadline ({saga.deadline:g}s) stops attempts "
                            "and cuts timeouts short; the formulas count every attempt"))
    for s in saga.steps:
        retry = scenario.retry(saga, s.name)
        if has_jitter(retry):
            found.append(Effect("jitter", f"{s.name} draws each delay from [0, d]; the formulas "
                                "use d", s.name, times_only=True))
        if retry.max_elapsed is not None:
            found.append(Effect("max_elapsed", f"{s.name} stops retrying after "
                                f"{retry.max_elapsed:g}s; the formulas count every attempt", s.name))
        after = getattr(s.adapter, "after", None)  # a Hedge starts its next replica after this
        if isinstance(after, float) and scenario.replicas.get(s.name, 1) > 1:
            found.append(Effect("hedging", f"{s.name} is hedged: in production a replica starts "
                                f"every {after:g}s while the others run, so the first good answer "
                                "comes sooner; the simulation tries them in turn", s.name,
                                times_only=True))
        if scenario.replicas.get(s.name, 1) > 1 and scenario.step_timeout(saga, s.name) is not None:
            found.append(Effect("replicas share one timeout", f"{s.name}'s replicas run within one "
                                "attempt's limit; the formulas give each replica the whole limit",
                                s.name))
    return found


def predict(saga: Saga, scenario: Scenario, *, seed: int = 0, samples: int = 20_000) -> SagaPrediction:
    """The analytic predictions for ``saga`` under ``scenario``, and the completion-time
    distribution of the same model (``samples`` draws, seeded by ``seed``)."""
    scenario.check(saga)
    scenario = scenario.for_saga(saga)
    models = {s.name: scenario.call(s.name) for s in saga.steps}
    steps: dict[str, StepPrediction] = {}
    reached = 1.0
    successes = []
    plans: list[tuple[str, CallModel, float | None, list[float]]] = []
    for s in saga.steps:
        retry = scenario.retry(saga, s.name)
        timeout = scenario.step_timeout(saga, s.name)
        p, over, q = _attempt_failure(models[s.name], timeout)
        k = _limit(retry, q)
        success = 1.0 - q**k
        expected = float(k) if q >= 1 else success / (1.0 - q)
        delays = nominal_delays(retry, k - 1)
        backoff = sum(d * q ** (i + 1) for i, d in enumerate(delays))
        worst = sum(delays) if retry.attempts is not None else None
        plans.append((s.name, models[s.name], timeout, delays))
        steps[s.name] = StepPrediction(
            name=s.name, attempts_allowed=retry.attempts, call_failure=p, timeout_failure=over,
            attempt_failure=q, success=success, expected_attempts=expected, delays=delays,
            expected_backoff=backoff, worst_backoff=worst, reached=reached, compensated=0.0,
            durations=[],
        )
        successes.append(success)
        reached *= success
    completed = reached
    # a step is compensated when it succeeded and a later step failed for good
    for i, s in enumerate(saga.steps):
        later = math.prod(successes[i + 1:])
        share = successes[i] * (1.0 - later) if s.compensation is not None else 0.0
        steps[s.name] = replace(steps[s.name], compensated=share)
    times, durations = _sample(plans, seeded("prediction", seed), samples)
    for name, values in durations.items():
        steps[name] = replace(steps[name], durations=sorted(values))
    return SagaPrediction(
        completed=completed, compensated=1.0 - completed, failed=0.0, steps=steps,
        times=sorted(times), effects=_effects(saga, scenario),
    )


def _sample(
    plans: list[tuple[str, CallModel, float | None, list[float]]], rng: random.Random, samples: int
) -> tuple[list[float], dict[str, list[float]]]:
    """Draw sagas from the independence model: completion times and step times."""
    times: list[float] = []
    durations: dict[str, list[float]] = {name: [] for name, *_ in plans}
    for _ in range(samples):
        total = 0.0
        for name, model, timeout, delays in plans:
            spent, ok, attempt = 0.0, False, 0
            while True:
                draw = model.attempt(rng, timeout)
                spent += draw.duration
                attempt += 1
                if draw.ok:
                    ok = True
                    break
                if attempt > len(delays):
                    break
                spent += delays[attempt - 1]
            total += spent
            if not ok:
                break
            durations[name].append(spent)
        else:
            times.append(total)
    return times, durations

"""Running a saga's real definition many times on the real coordinator, with simulated work.

Each step's function is replaced by a simulated call (see :mod:`.model`):
the order of steps, their retry policies, timeouts, compensations and the
saga's deadline are the definition's own (or the scenario's replacements),
and the real :class:`~saga.Coordinator` decides every retry, wait and
compensation. Latency is spent on a :class:`~saga.VirtualClock`, so no real
time passes; sagas run one after another so that each one's times are its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from saga.clock import VirtualClock
from saga.coordinator import Coordinator
from saga.definition import Saga, StepContext
from saga.errors import InvalidInput
from saga.simulate.model import CallModel, seeded
from saga.simulate.spec import Scenario
from saga.store import EventStore
from saga.text import count

__all__ = ["Measurements", "SagaRun", "SimulatedFault", "StepRun", "simulate"]

_FOREVER = 1e9  # seconds: leases and polls that never lapse on the virtual clock


class SimulatedFault(Exception):
    """A simulated call failed (retryable)."""


def open_store() -> EventStore:
    """The store a simulation runs on: a private in-memory log (``memory://``)."""
    return EventStore("memory://")


@dataclass(slots=True)
class StepRun:
    """One step of one simulated saga, as measured."""

    attempts: int = 0
    succeeded: bool = False
    compensated: bool = False
    duration: float = 0.0
    """From the start of its first attempt to the end of its last."""
    backoff: float = 0.0
    """Time between its attempts (waiting for the next one)."""
    timeouts: int = 0
    first_start: float | None = field(default=None, repr=False, compare=False)
    last_end: float | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class SagaRun:
    """One simulated saga: how it ended, how long it took, and its steps (those it reached)."""

    status: str
    duration: float
    steps: dict[str, StepRun]


@dataclass(frozen=True, slots=True)
class Measurements:
    """Every run of a simulation, in the order the runs were made."""

    saga: Saga
    scenario: Scenario
    runs: list[SagaRun]
    seed: int
    seconds: float = field(compare=False)
    """Real time the runs took."""


class _Recorder:
    """Collects what the simulated calls of the saga now running did."""

    def __init__(self) -> None:
        self.steps: dict[str, StepRun] = {}

    def attempt(self, step: str, start: float, end: float, *, timed_out: bool) -> None:
        run = self.steps.get(step)
        if run is None:
            run = self.steps[step] = StepRun(first_start=start)
        if run.last_end is not None:
            run.backoff += start - run.last_end
        run.last_end = end
        run.duration = end - (start if run.first_start is None else run.first_start)
        run.timeouts += timed_out


def _simulated(saga: Saga, scenario: Scenario, clock: VirtualClock, seed: int,
               recorder: _Recorder) -> Saga:
    """A copy of ``saga`` whose steps and compensations are simulated calls."""
    epoch = clock.now()
    copy = Saga(saga.name, version=saga.version, deadline=saga.deadline)

    def work(model: CallModel, ctx: StepContext) -> None:
        now = clock.now()
        limit = None
        if ctx.attempt_deadline is not None:
            limit = (ctx.attempt_deadline - now).total_seconds()
        draw = model.attempt(seeded(seed, ctx.saga_id, ctx.step, ctx.attempt), limit)
        clock.advance(draw.duration)
        start = (now - epoch).total_seconds()
        end = (clock.now() - epoch).total_seconds()
        recorder.attempt(ctx.step, start, end, timed_out=draw.timed_out)
        # A timed-out draw has moved the clock to the attempt's limit: the coordinator records
        # an attempt that returns at or after its limit (on its clock) as timed out.
        if not draw.ok and not draw.timed_out:
            raise SimulatedFault(f"{ctx.step}: simulated failure "
                                 f"({count(draw.replicas_tried, 'replica')} tried)")

    def call(model: CallModel) -> Callable[[StepContext], None]:
        return lambda ctx: work(model, ctx)

    def undo(ctx: StepContext) -> None:
        return None

    for s in saga.steps:
        step = copy.step(name=s.name, retry=scenario.retry(saga, s.name),
                         timeout=scenario.step_timeout(saga, s.name))(call(scenario.call(s.name)))
        if s.compensation is not None:
            step.compensate(retry=s.compensation.retry, timeout=s.compensation.timeout)(undo)
    return copy


def simulate(saga: Saga, scenario: Scenario, *, runs: int, seed: int = 0) -> Measurements:
    """Run ``saga`` ``runs`` times under ``scenario`` and measure every run.

    The same ``seed`` gives the same measurements: every draw is seeded by
    the seed, the saga's id and the attempt.
    """
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise InvalidInput(f"runs must be a whole number of at least 1, got {runs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInput(f"seed must be a whole number, got {seed!r}")
    if not saga.steps:
        raise InvalidInput(f"saga {saga.name!r} has no steps")
    scenario.check(saga)
    scenario = scenario.for_saga(saga)
    clock = VirtualClock()
    recorder = _Recorder()
    copy = _simulated(saga, scenario, clock, seed, recorder)
    store = open_store()
    measured: list[SagaRun] = []
    began = time.perf_counter()
    try:
        with Coordinator(store, [copy], clock=clock, lease=_FOREVER, poll_interval=_FOREVER,
                         worker_id="simulator", step_threads=False) as coordinator:
            for i in range(runs):
                recorder.steps = {}
                view = coordinator.execute(saga.name, None, saga_id=f"sim-{seed}-{i}")
                assert view.started_at is not None and view.ended_at is not None
                steps = recorder.steps
                for name, s in view.steps.items():
                    run = steps.setdefault(name, StepRun())
                    run.attempts = s.attempts
                    run.succeeded = s.status == "succeeded"
                    run.compensated = s.compensation == "compensated"
                measured.append(SagaRun(view.status.value,
                                        (view.ended_at - view.started_at).total_seconds(), steps))
    finally:
        store.close()
    return Measurements(saga, scenario, measured, seed, time.perf_counter() - began)

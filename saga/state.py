"""The pure core: fold a saga's events into its state, and decide what comes next.

Nothing here touches a database, a thread or the clock: ``now`` is an
argument. :func:`fold` replays a log; :func:`decide` maps a state, its
definition and the time to one :class:`Action`; :func:`attempt_outcome`
turns what an attempt did into the events that record it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from . import events as ev
from .definition import Saga

__all__ = [
    "Action",
    "AttemptError",
    "ErrorInfo",
    "Record",
    "Rest",
    "SagaState",
    "SagaStatus",
    "SagaView",
    "StartAttempt",
    "StepState",
    "StepView",
    "Wait",
    "attempt_outcome",
    "decide",
    "fold",
    "idempotency_key",
]


class SagaStatus(StrEnum):
    """Where a saga is in its life."""

    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    FAILED = "failed"

    @property
    def is_active(self) -> bool:
        """Whether a coordinator still has work to do without an operator."""
        return self in (SagaStatus.RUNNING, SagaStatus.COMPENSATING)


class Phase(StrEnum):
    """Where one step's forward attempts, or its compensation's attempts, stand."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    GAVE_UP = "gave_up"
    FAILED = "failed"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A failed attempt's error as recorded in the log."""

    type: str
    message: str
    timed_out: bool = False
    lost: bool = False


@dataclass(slots=True)
class Track:
    """The attempts of one step's forward action or of its compensation."""

    phase: Phase = Phase.PENDING
    attempts: int = 0
    budget_start: int = 0
    budget_started_at: datetime | None = None
    open_timeout_at: datetime | None = None
    next_attempt_at: datetime | None = None
    gave_up: str | None = None
    last_error: ErrorInfo | None = None

    def start(self, attempt: int, at: datetime, timeout_at: datetime | None) -> None:
        self.phase = Phase.RUNNING
        self.attempts = attempt
        self.open_timeout_at = timeout_at
        self.next_attempt_at = None
        if self.budget_started_at is None:
            self.budget_started_at = at

    def fail(self, e: ev.StepAttemptFailed | ev.CompensationAttemptFailed) -> None:
        self.last_error = ErrorInfo(e.error_type, e.message, e.timed_out, e.lost)
        self.open_timeout_at = None
        if e.retried:
            self.phase = Phase.WAITING
            self.next_attempt_at = e.next_attempt_at
        else:
            self.phase = Phase.GAVE_UP
            self.gave_up = e.gave_up


@dataclass(slots=True)
class StepState:
    """One step as folded from the log."""

    name: str
    forward: Track = field(default_factory=Track)
    compensation: Track = field(default_factory=Track)
    result: Any = None
    in_doubt: bool = False
    failure: str | None = None

    @property
    def needs_undo(self) -> bool:
        """Succeeded, or its effect is in doubt (an attempt timed out or was lost)."""
        return self.forward.phase is Phase.DONE or self.in_doubt


@dataclass(slots=True)
class SagaState:
    """A saga as folded from its log. Build with :func:`fold`; extend with :meth:`apply`."""

    saga_id: str
    seq: int = 0
    name: str = ""
    version: int = 0
    input: Any = None
    status: SagaStatus = SagaStatus.RUNNING
    started_at: datetime | None = None
    deadline: datetime | None = None
    ended_at: datetime | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    reason: str | None = None
    cancel_requested: str | None = None

    def step(self, name: str) -> StepState:
        s = self.steps.get(name)
        if s is None:
            s = self.steps[name] = StepState(name)
        return s

    @property
    def results(self) -> dict[str, Any]:
        """Outputs of the steps that succeeded, by name."""
        return {n: s.result for n, s in self.steps.items() if s.forward.phase is Phase.DONE}

    def apply(self, e: ev.Event) -> None:
        """Fold one more event into this state (the next ``seq``)."""
        self.seq += 1
        match e:
            case ev.SagaStarted():
                self.name, self.version, self.input = e.name, e.version, e.input
                self.started_at, self.deadline = e.at, e.deadline
                self.status = SagaStatus.RUNNING
            case ev.StepAttemptStarted():
                self.step(e.step).forward.start(e.attempt, e.at, e.timeout_at)
            case ev.StepAttemptFailed():
                s = self.step(e.step)
                s.forward.fail(e)
                s.in_doubt = s.in_doubt or e.timed_out or e.lost
            case ev.StepSucceeded():
                s = self.step(e.step)
                s.forward.phase, s.forward.open_timeout_at = Phase.DONE, None
                s.result = e.result
            case ev.StepFailed():
                s = self.step(e.step)
                s.forward.phase, s.failure = Phase.FAILED, e.reason
            case ev.CompensationStarted():
                self.status, self.reason = SagaStatus.COMPENSATING, e.reason
            case ev.CompensationAttemptStarted():
                self.step(e.step).compensation.start(e.attempt, e.at, e.timeout_at)
            case ev.CompensationAttemptFailed():
                self.step(e.step).compensation.fail(e)
            case ev.StepCompensated():
                c = self.step(e.step).compensation
                c.phase, c.open_timeout_at = Phase.DONE, None
            case ev.CompensationFailed():
                self.step(e.step).compensation.phase = Phase.FAILED
            case ev.SagaCompleted():
                self.status, self.ended_at = SagaStatus.COMPLETED, e.at
            case ev.SagaCompensated():
                self.status, self.ended_at = SagaStatus.COMPENSATED, e.at
            case ev.SagaFailed():
                self.status, self.ended_at = SagaStatus.FAILED, e.at
                self.reason = f"compensation of {e.step} gave up: {e.reason}"
            case ev.SagaRetryRequested():
                self.status, self.ended_at = SagaStatus.COMPENSATING, None
                for s in self.steps.values():
                    c = s.compensation
                    if c.phase in (Phase.FAILED, Phase.GAVE_UP):
                        c.phase, c.gave_up, c.next_attempt_at = Phase.WAITING, None, None
                        c.budget_start, c.budget_started_at = c.attempts, None
            case ev.SagaCancelRequested():
                self.cancel_requested = e.reason or "cancelled"
            case _:
                raise TypeError(f"cannot fold {type(e).__name__}")

    def view(self) -> SagaView:
        """A frozen summary for users and operators."""
        return SagaView(
            saga_id=self.saga_id,
            name=self.name,
            version=self.version,
            status=self.status,
            input=self.input,
            results=self.results,
            steps={
                n: StepView(
                    name=n,
                    status=s.forward.phase.value if s.forward.phase is not Phase.DONE
                    else "succeeded",
                    attempts=s.forward.attempts,
                    result=s.result,
                    error=s.forward.last_error,
                    in_doubt=s.in_doubt,
                    next_attempt_at=s.forward.next_attempt_at,
                    compensation=None if s.compensation.phase is Phase.PENDING
                    else ("compensated" if s.compensation.phase is Phase.DONE
                          else s.compensation.phase.value),
                    compensation_attempts=s.compensation.attempts,
                    compensation_error=s.compensation.last_error,
                )
                for n, s in self.steps.items()
            },
            reason=self.reason,
            started_at=self.started_at,
            deadline=self.deadline,
            ended_at=self.ended_at,
            seq=self.seq,
        )


@dataclass(frozen=True, slots=True)
class StepView:
    """One step of a :class:`SagaView`."""

    name: str
    status: str
    attempts: int
    result: Any
    error: ErrorInfo | None
    in_doubt: bool
    next_attempt_at: datetime | None
    compensation: str | None
    compensation_attempts: int
    compensation_error: ErrorInfo | None


@dataclass(frozen=True, slots=True)
class SagaView:
    """What a saga's log says about it now."""

    saga_id: str
    name: str
    version: int
    status: SagaStatus
    input: Any
    results: Mapping[str, Any]
    steps: Mapping[str, StepView]
    reason: str | None
    started_at: datetime | None
    deadline: datetime | None
    ended_at: datetime | None
    seq: int


def fold(saga_id: str, events: Iterable[ev.Event]) -> SagaState:
    """Replay a saga's events, oldest first, into its state."""
    state = SagaState(saga_id)
    for e in events:
        state.apply(e)
    return state


# -- decisions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """Append these events; nothing outside runs."""

    events: tuple[ev.Event, ...]


@dataclass(frozen=True, slots=True)
class StartAttempt:
    """Run this attempt of a step (or of its compensation) after recording its start."""

    step: str
    attempt: int
    compensation: bool
    timeout_at: datetime | None

    def started(self, now: datetime) -> ev.Event:
        cls = ev.CompensationAttemptStarted if self.compensation else ev.StepAttemptStarted
        return cls(step=self.step, attempt=self.attempt, at=now, timeout_at=self.timeout_at)


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do before ``until``."""

    until: datetime


@dataclass(frozen=True, slots=True)
class Rest:
    """Nothing to do until an operator acts (completed, compensated or failed)."""


Action = Record | StartAttempt | Wait | Rest


@dataclass(frozen=True, slots=True)
class AttemptError:
    """How an attempt failed, as the shell observed it."""

    type: str
    message: str
    retryable: bool = True
    timed_out: bool = False
    lost: bool = False


def idempotency_key(saga_id: str, step: str, *, compensation: bool = False) -> str:
    """The key every attempt of this step (or of its compensation) shares."""
    return f"{saga_id}/{step}/{'compensate' if compensation else 'do'}"


def decide(state: SagaState, saga: Saga, now: datetime) -> Action:
    """The next thing a coordinator holding this saga must do."""
    if not state.status.is_active:
        return Rest()
    steps = state.steps.values()
    if state.status is SagaStatus.RUNNING:
        for s in steps:
            if s.forward.phase is Phase.RUNNING:
                return Record(_lost(state, saga, s, compensation=False, now=now))
        for s in steps:
            if s.forward.phase is Phase.GAVE_UP:
                return Record((ev.StepFailed(step=s.name, reason=_why(s.forward), at=now),))
        for s in steps:
            if s.forward.phase is Phase.FAILED:
                reason = f"step {s.name} failed: {s.failure}"
                return Record((ev.CompensationStarted(reason=reason, step=s.name, at=now),))
        if state.cancel_requested is not None:
            reason = f"cancelled: {state.cancel_requested}"
            return Record((ev.CompensationStarted(reason=reason, at=now),))
        if state.deadline is not None and now >= state.deadline:
            return Record((ev.CompensationStarted(reason="the saga deadline passed", at=now),))
        for step in saga.steps:
            current = state.steps.get(step.name)
            if current is not None and current.forward.phase is Phase.DONE:
                continue
            attempt = 1 if current is None else current.forward.attempts + 1
            waiting_until = None if current is None else current.forward.next_attempt_at
            if waiting_until is not None and waiting_until > now:
                return Wait(waiting_until)
            timeout_at = now + timedelta(seconds=step.timeout) if step.timeout else None
            if state.deadline is not None and (timeout_at is None or timeout_at > state.deadline):
                timeout_at = state.deadline
            return StartAttempt(step.name, attempt, compensation=False, timeout_at=timeout_at)
        return Record((ev.SagaCompleted(at=now),))

    # compensating
    for s in steps:
        if s.forward.phase is Phase.RUNNING:  # cannot happen in a log we wrote; close it safely
            return Record(_lost(state, saga, s, compensation=False, now=now))
        if s.compensation.phase is Phase.RUNNING:
            return Record(_lost(state, saga, s, compensation=True, now=now))
    for s in steps:
        if s.compensation.phase is Phase.GAVE_UP:
            reason = _why(s.compensation)
            return Record((
                ev.CompensationFailed(step=s.name, reason=reason, at=now),
                ev.SagaFailed(step=s.name, reason=reason, at=now),
            ))
    for s in reversed(state.steps.values()):
        if not s.needs_undo or s.compensation.phase is Phase.DONE:
            continue
        comp = saga[s.name].compensation if s.name in saga else None
        if comp is None:
            continue
        c = s.compensation
        if c.next_attempt_at is not None and c.next_attempt_at > now:
            return Wait(c.next_attempt_at)
        timeout_at = now + timedelta(seconds=comp.timeout) if comp.timeout else None
        return StartAttempt(s.name, c.attempts + 1, compensation=True, timeout_at=timeout_at)
    return Record((ev.SagaCompensated(at=now),))


def _why(track: Track) -> str:
    """Why a step or compensation failed for good: its last error and why it was not retried."""
    err = track.last_error
    if err is None:
        return track.gave_up or "gave up"
    return f"{err.type}: {err.message} ({track.gave_up})"


def attempt_outcome(
    state: SagaState,
    saga: Saga,
    attempt: StartAttempt,
    *,
    result: Any = None,
    error: AttemptError | None = None,
    now: datetime,
) -> tuple[ev.Event, ...]:
    """The events that record how ``attempt`` ended: success with ``result``, or ``error``."""
    if error is None:
        if attempt.compensation:
            return (ev.StepCompensated(step=attempt.step, attempt=attempt.attempt, at=now),)
        return (ev.StepSucceeded(step=attempt.step, attempt=attempt.attempt, result=result, at=now),)
    return (_failure(state, saga, attempt.step, attempt.attempt, attempt.compensation, error, now),)


def _lost(
    state: SagaState, saga: Saga, s: StepState, *, compensation: bool, now: datetime
) -> tuple[ev.Event, ...]:
    track = s.compensation if compensation else s.forward
    error = AttemptError(
        type="AttemptLost",
        message=f"attempt {track.attempts} had no outcome when its worker's lease expired",
        lost=True,
    )
    return (_failure(state, saga, s.name, track.attempts, compensation, error, now),)


def _failure(  # noqa: PLR0917
    state: SagaState,
    saga: Saga,
    step_name: str,
    attempt: int,
    compensation: bool,
    error: AttemptError,
    now: datetime,
) -> ev.Event:
    s = state.step(step_name)
    track = s.compensation if compensation else s.forward
    step = saga.get(step_name)
    action = step.compensation if (compensation and step is not None) else step
    gave_up: str | None = None
    next_at: datetime | None = None
    if action is None:
        gave_up = f"step {step_name} is not in version {saga.version} of {saga.name}"
    elif not error.retryable:
        gave_up = "not retried"
    elif not compensation and state.status is not SagaStatus.RUNNING:
        gave_up = "the saga is compensating"
    elif not compensation and state.deadline is not None and now >= state.deadline:
        gave_up = "the saga deadline passed"
    else:
        started = track.budget_started_at or now
        delay, gave_up = action.retry.next_delay(
            attempt=attempt - track.budget_start,
            elapsed=(now - started).total_seconds(),
            seed=idempotency_key(state.saga_id, step_name, compensation=compensation),
        )
        if delay is not None:
            next_at = now + timedelta(seconds=delay)
            if not compensation and state.deadline is not None and next_at >= state.deadline:
                gave_up, next_at = "the next attempt would start after the saga deadline", None
    cls = ev.CompensationAttemptFailed if compensation else ev.StepAttemptFailed
    return cls(
        step=step_name,
        attempt=attempt,
        error_type=error.type,
        message=error.message,
        timed_out=error.timed_out,
        lost=error.lost,
        retried=next_at is not None,
        next_attempt_at=next_at,
        gave_up=gave_up,
        at=now,
    )

"""The pure core, first half: fold a saga's events into its state.

Nothing here touches a database, a thread or the clock. :func:`fold` replays
a log into a :class:`SagaState`; :meth:`SagaState.apply` extends one by an
event; :meth:`SagaState.view` freezes it into the :class:`SagaView` users see.
What to do next is :mod:`saga._engine.decide`'s job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from saga import events as ev

__all__ = [
    "NOT_RETRIED",
    "ErrorInfo",
    "Phase",
    "SagaState",
    "SagaStatus",
    "SagaView",
    "StepState",
    "StepView",
    "Track",
    "fold",
]

NOT_RETRIED = "not retried"
"""``gave_up`` of an attempt whose error its policy never retries."""


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
    """How an attempt failed: as the coordinator observed it, and as the log records it.

    ``type`` is the exception's name (``module.Class``), or one of the
    library's own kinds (``AttemptTimedOut``, ``AttemptLost``,
    ``InvalidResult``, ``PayloadTooLarge``); ``retryable`` says whether the
    step's policy may retry this error at all; ``timed_out`` and ``lost`` mark
    an attempt whose effect is in doubt (it may have happened outside).
    ``retry_after`` is the earliest time the failed service asked to be called
    again (an HTTP ``Retry-After``, an open circuit breaker): the next attempt
    starts no sooner. The log records it as the attempt's ``next_attempt_at``.
    """

    type: str
    message: str
    retryable: bool = True
    timed_out: bool = False
    lost: bool = False
    retry_after: datetime | None = None


@dataclass(slots=True)
class Track:
    """The attempts of one step's forward action or of its compensation."""

    phase: Phase = Phase.PENDING
    attempts: int = 0
    budget_start: int = 0
    budget_started_at: datetime | None = None
    next_attempt_at: datetime | None = None
    gave_up: str | None = None
    last_error: ErrorInfo | None = None

    def start(self, attempt: int, at: datetime) -> None:
        self.phase = Phase.RUNNING
        self.attempts = attempt
        self.next_attempt_at = None
        if self.budget_started_at is None:
            self.budget_started_at = at

    def fail(self, e: ev.StepAttemptFailed | ev.CompensationAttemptFailed) -> None:
        self.last_error = ErrorInfo(
            e.error_type, e.message, retryable=e.gave_up != NOT_RETRIED,
            timed_out=e.timed_out, lost=e.lost,
        )
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
    compensation_reason: str | None = None  # why compensation began; a retry makes it the reason again
    cancel_requested: str | None = None
    trace: dict[str, str] | None = None
    parked: str | None = None
    """Why a worker cannot drive the saga, while the last event of its log says so."""

    def step(self, name: str) -> StepState:
        """The folded state of step ``name`` (created pending when the log has not named it)."""
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
        self.parked = None  # whatever follows a SagaParked ends it
        match e:
            case ev.SagaStarted():
                self.name, self.version, self.input = e.name, e.version, e.input
                self.started_at, self.deadline = e.at, e.deadline
                self.trace = e.trace
                self.status = SagaStatus.RUNNING
            case ev.StepAttemptStarted():
                self.step(e.step).forward.start(e.attempt, e.at)
            case ev.StepAttemptFailed():
                s = self.step(e.step)
                s.forward.fail(e)
                s.in_doubt = s.in_doubt or e.timed_out or e.lost
            case ev.StepSucceeded():
                s = self.step(e.step)
                s.forward.phase = Phase.DONE
                s.result = e.result
            case ev.StepSkipped() | ev.StepCopied():
                s = self.step(e.step)  # taken as succeeded with this result, by an operator
                s.forward.phase, s.forward.gave_up, s.forward.next_attempt_at = Phase.DONE, None, None
                s.result, s.failure = e.result, None
            case ev.StepFailed():
                s = self.step(e.step)
                s.forward.phase, s.failure = Phase.FAILED, e.reason
            case ev.CompensationStarted():
                self.status, self.reason = SagaStatus.COMPENSATING, e.reason
                self.compensation_reason = e.reason
            case ev.CompensationAttemptStarted():
                self.step(e.step).compensation.start(e.attempt, e.at)
            case ev.CompensationAttemptFailed():
                self.step(e.step).compensation.fail(e)
            case ev.StepCompensated():
                c = self.step(e.step).compensation
                c.phase = Phase.DONE
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
                if self.status is not SagaStatus.FAILED:
                    return  # a parked saga retried: it is due again, nothing else changes
                self.status, self.ended_at = SagaStatus.COMPENSATING, None
                self.reason = self.compensation_reason  # the compensation that gave up is reopened
                for s in self.steps.values():
                    c = s.compensation
                    if c.phase in (Phase.FAILED, Phase.GAVE_UP):
                        c.phase, c.gave_up, c.next_attempt_at = Phase.WAITING, None, None
                        c.budget_start, c.budget_started_at = c.attempts, None
            case ev.SagaCancelRequested():
                self.cancel_requested = e.reason or "cancelled"
            case ev.SagaForked():
                pass  # names the fork; changes nothing here
            case ev.SagaParked():
                self.parked = e.reason
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
            parked=self.parked,
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
    parked: str | None = None
    """Why no worker can drive the saga now (see :class:`~saga.events.SagaParked`), else ``None``."""


def fold(saga_id: str, events: Iterable[ev.Event]) -> SagaState:
    """Replay a saga's events, oldest first, into its state."""
    state = SagaState(saga_id)
    for e in events:
        state.apply(e)
    return state

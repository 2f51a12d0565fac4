"""The pure core, second half: decide what a saga needs next, and record how attempts end.

Nothing here touches a database, a thread or the clock: ``now`` is an
argument. :func:`decide` maps a folded state, its definition and the time to
one :class:`Action`; :func:`attempt_outcome` turns what an attempt did into
the events that record it; :func:`check_fits` refuses a log that names steps
its definition does not have.

:func:`decide` reads as two lists of rules, one per active status, each rule
a small function that returns an action or ``None`` (not this rule); the
first rule that answers wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from saga import events as ev
from saga.calls import Call
from saga.definition import Saga
from saga.errors import DefinitionMismatch, PolicyError
from saga.policies import Retry
from saga.state import NOT_RETRIED, ErrorInfo, Phase, SagaState, SagaStatus, StepState, Track

__all__ = [
    "Action",
    "Record",
    "Rest",
    "StartAttempt",
    "Wait",
    "attempt_outcome",
    "check_fits",
    "decide",
    "idempotency_key",
]


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
        """The event that records this attempt's start at ``now``."""
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
_Rule = Callable[[SagaState, Saga, datetime], Action | None]


def idempotency_key(saga_id: str, step: str, *, compensation: bool = False) -> str:
    """The key every attempt of this step (or of its compensation) shares."""
    return f"{saga_id}/{step}/{'compensate' if compensation else 'do'}"


def check_fits(state: SagaState, saga: Saga) -> None:
    """Raise :class:`~saga.errors.DefinitionMismatch` if the log names a step ``saga`` lacks.

    A step renamed without a new version would otherwise be neither run nor
    compensated: the coordinator must not guess what the old name meant.
    """
    if state.steps.keys() <= saga.step_names and state.status is not SagaStatus.COMPENSATING:
        return  # the usual case, checked at C speed: only a compensating saga has undo attempts
    for name, s in state.steps.items():
        step = saga.get(name)
        if step is None:
            missing = f"step {name!r}"
        elif s.compensation.attempts and step.compensation is None:
            missing = f"a compensation of step {name!r}"
        else:
            continue
        raise DefinitionMismatch(
            f"saga {state.saga_id}: its log names {missing}, which version {saga.version} of "
            f"{saga.name!r} does not have (renamed or removed without a new version?); "
            "register the definition the saga was started with"
        )


def decide(state: SagaState, saga: Saga, now: datetime) -> Action:
    """The next thing a coordinator holding this saga must do.

    Raises :class:`~saga.errors.DefinitionMismatch` (see :func:`check_fits`)
    rather than guess about a step the definition does not have.
    """
    if state.status.is_active:
        check_fits(state, saga)
    last: type[ev.SagaCompleted | ev.SagaCompensated]
    if state.status is SagaStatus.RUNNING:
        rules, last = _RUNNING, ev.SagaCompleted
    elif state.status is SagaStatus.COMPENSATING:
        rules, last = _COMPENSATING, ev.SagaCompensated
    else:
        return Rest()
    for rule in rules:
        action = rule(state, saga, now)
        if action is not None:
            return action
    return Record((last(at=now),))


# -- running: close what is open, give up what failed, stop if told, else the next step ---------


def _close_lost_attempt(state: SagaState, saga: Saga, now: datetime) -> Action | None:
    """An attempt started with no outcome was lost with its worker (we hold the lease now)."""
    for s in state.steps.values():
        if s.forward.phase is Phase.RUNNING:
            return Record(_lost(state, saga, s, compensation=False, now=now))
    return None


def _fail_given_up_step(state: SagaState, saga: Saga, now: datetime) -> Action | None:
    for s in state.steps.values():
        if s.forward.phase is Phase.GAVE_UP:
            return Record((ev.StepFailed(step=s.name, reason=_why(s.forward), at=now),))
    return None


def _compensate_failed_step(state: SagaState, saga: Saga, now: datetime) -> Action | None:
    for s in state.steps.values():
        if s.forward.phase is Phase.FAILED:
            reason = f"step {s.name} failed: {s.failure}"
            return Record((ev.CompensationStarted(reason=reason, step=s.name, at=now),))
    return None


def _compensate_if_cancelled(state: SagaState, saga: Saga, now: datetime) -> Action | None:
    if state.cancel_requested is None:
        return None
    reason = f"cancelled: {state.cancel_requested}"
    return Record((ev.CompensationStarted(reason=reason, at=now),))


def _compensate_past_deadline(state: SagaState, saga: Saga, now: datetime) -> Action | None:
    if state.deadline is None or now < state.deadline:
        return None
    return Record((ev.CompensationStarted(reason="the saga deadline passed", at=now),))


def _next_step(state: SagaState, saga: Saga, now: datetime) -> Action | None:
    """The first step not done yet: wait for its retry time, or start its next attempt."""
    for step in saga.steps:
        current = state.steps.get(step.name)
        if current is None:
            attempt, waiting_until = 1, None
        elif current.forward.phase is Phase.DONE:
            continue
        else:
            attempt, waiting_until = current.forward.attempts + 1, current.forward.next_attempt_at
        if waiting_until is not None and waiting_until > now:
            return Wait(waiting_until)
        timeout_at = now + timedelta(seconds=step.timeout) if step.timeout else None
        if state.deadline is not None and (timeout_at is None or timeout_at > state.deadline):
            timeout_at = state.deadline
        return StartAttempt(step.name, attempt, compensation=False, timeout_at=timeout_at)
    return None


_RUNNING: tuple[_Rule, ...] = (
    _close_lost_attempt,
    _compensate_if_cancelled,  # before a step that gave up only because of the cancel fails
    _fail_given_up_step,
    _compensate_failed_step,
    _compensate_past_deadline,
    _next_step,
)


# -- compensating: close what is open, fail if a compensation gave up, else undo the next ------


def _close_lost_attempts(state: SagaState, saga: Saga, now: datetime) -> Action | None:
    for s in state.steps.values():
        if s.forward.phase is Phase.RUNNING:  # cannot happen in a log we wrote; close it safely
            return Record(_lost(state, saga, s, compensation=False, now=now))
        if s.compensation.phase is Phase.RUNNING:
            return Record(_lost(state, saga, s, compensation=True, now=now))
    return None


def _fail_given_up_compensation(state: SagaState, saga: Saga, now: datetime) -> Action | None:
    for s in state.steps.values():
        if s.compensation.phase is Phase.GAVE_UP:
            reason = _why(s.compensation)
            return Record((
                ev.CompensationFailed(step=s.name, reason=reason, at=now),
                ev.SagaFailed(step=s.name, reason=reason, at=now),
            ))
    return None


def _next_undo(state: SagaState, saga: Saga, now: datetime) -> Action | None:
    """The newest step to undo: wait for its retry time, or start its compensation's next attempt."""
    for s in reversed(state.steps.values()):
        if not s.needs_undo or s.compensation.phase is Phase.DONE:
            continue
        comp = saga[s.name].compensation  # check_fits: every step in the log is in saga
        if comp is None:
            continue
        c = s.compensation
        if c.next_attempt_at is not None and c.next_attempt_at > now:
            return Wait(c.next_attempt_at)
        timeout_at = now + timedelta(seconds=comp.timeout) if comp.timeout else None
        return StartAttempt(s.name, c.attempts + 1, compensation=True, timeout_at=timeout_at)
    return None


_COMPENSATING: tuple[_Rule, ...] = (
    _close_lost_attempts,
    _fail_given_up_compensation,
    _next_undo,
)


# -- outcomes ---------------------------------------------------------------------------------


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
    error: ErrorInfo | None = None,
    calls: tuple[Call, ...] = (),
    now: datetime,
) -> tuple[ev.Event, ...]:
    """The events that record how ``attempt`` ended: success with ``result``, or ``error``;
    ``calls`` are what the attempt's adapters did."""
    if error is None:
        if attempt.compensation:
            return (ev.StepCompensated(step=attempt.step, attempt=attempt.attempt, calls=calls,
                                       at=now),)
        return (ev.StepSucceeded(step=attempt.step, attempt=attempt.attempt, result=result,
                                 calls=calls, at=now),)
    return (_failure(state, saga, attempt.step, attempt.attempt, attempt.compensation, error, now,
                     calls),)


def _lost(
    state: SagaState, saga: Saga, s: StepState, *, compensation: bool, now: datetime
) -> tuple[ev.Event, ...]:
    track = s.compensation if compensation else s.forward
    error = ErrorInfo(
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
    error: ErrorInfo,
    now: datetime,
    calls: tuple[Call, ...] = (),
) -> ev.Event:
    """The failed-attempt event: whether the policy retries it, and when (no sooner than
    the error's ``retry_after``)."""
    s = state.step(step_name)
    track = s.compensation if compensation else s.forward
    step = saga.get(step_name)
    action = step.compensation if (compensation and step is not None) else step
    if action is None:
        what = "a compensation of step" if step is not None else "step"
        raise DefinitionMismatch(
            f"saga {state.saga_id}: its log has attempts of {what} {step_name!r}, which "
            f"version {saga.version} of {saga.name!r} does not have"
        )
    gave_up: str | None = None
    next_at: datetime | None = None
    if not error.retryable:
        gave_up = NOT_RETRIED
    elif not compensation and state.status is not SagaStatus.RUNNING:
        gave_up = "the saga is compensating"
    elif not compensation and state.cancel_requested is not None:
        gave_up = "the saga is cancelled"  # it compensates next: the policy is not asked
    elif not compensation and state.deadline is not None and now >= state.deadline:
        gave_up = "the saga deadline passed"
    else:
        started = track.budget_started_at or now
        try:
            delay, gave_up = action.retry.next_delay(
                attempt=attempt - track.budget_start,
                elapsed=(now - started).total_seconds(),
                seed=idempotency_key(state.saga_id, step_name, compensation=compensation),
            )
        except PolicyError as e:
            raise PolicyError(f"{action.name}: {e}") from e
        if delay is not None:
            next_at = now + timedelta(seconds=delay)
            gave_up, next_at = _respect_retry_after(action.retry, error, started, next_at)
            if next_at is not None and not compensation and state.deadline is not None and (
                next_at >= state.deadline
            ):
                asked = " (the service's Retry-After)" if next_at == error.retry_after else ""
                gave_up = f"the next attempt would start after the saga deadline{asked}"
                next_at = None
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
        calls=calls,
        at=now,
    )


def _respect_retry_after(
    retry: Retry, error: ErrorInfo, started: datetime, next_at: datetime
) -> tuple[str | None, datetime | None]:
    """``next_at`` moved to the error's ``retry_after`` if that is later; gives up when that
    is past the policy's ``max_elapsed`` (counted from ``started``)."""
    after = error.retry_after
    if after is None or after <= next_at:
        return None, next_at
    if retry.max_elapsed is not None and after > started + timedelta(seconds=retry.max_elapsed):
        return (f"the service asked to be called again at {after.isoformat()} (Retry-After), "
                f"after max_elapsed ({retry.max_elapsed:g}s)"), None
    return None, after

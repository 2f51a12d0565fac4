"""A saga's timeline as data: each attempt with its outcome, and what operators did.

Built from the saga's stored events in one pass, so a caller can feed it
pages of the log as they are read. ``saga show --json`` prints
:meth:`Timeline.to_json`; the text timeline draws the same facts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from . import events as ev
from .state import SagaState
from .store.base import StoredEvent

__all__ = ["Attempt", "OperatorAction", "Outcome", "Timeline", "timeline"]

Outcome = Literal["succeeded", "failed", "timed_out", "lost", "running"]


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


@dataclass(slots=True)
class Attempt:
    """One attempt of a step or of its compensation, from its start to its outcome.

    ``outcome`` is ``running`` while no outcome is recorded; ``lost`` means
    its worker died (or its result could not be stored) before it could say.
    ``next_attempt_at`` is when the retry that follows a failure is due
    (``None`` when none follows). ``calls`` lists what the step's adapters
    did, from the outcome event (empty when none were recorded).
    """

    step: str
    attempt: int
    compensation: bool
    started_at: datetime | None
    ended_at: datetime | None = None
    outcome: Outcome = "running"
    error_type: str | None = None
    message: str | None = None
    next_attempt_at: datetime | None = None
    calls: list[Any] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The attempt as a JSON object (times in ISO 8601)."""
        return {
            "step": self.step,
            "attempt": self.attempt,
            "compensation": self.compensation,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "outcome": self.outcome,
            "error_type": self.error_type,
            "message": self.message,
            "next_attempt_at": _iso(self.next_attempt_at),
            "calls": list(self.calls),
        }


@dataclass(frozen=True, slots=True)
class OperatorAction:
    """An operator's action: ``cancel``, ``retry``, ``skip`` (a step) or ``fork``, when, by whom
    (if recorded) and why."""

    type: Literal["cancel", "retry", "skip", "fork"]
    at: datetime
    by: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The action as a JSON object."""
        return {"type": self.type, "at": self.at.isoformat(), "by": self.by, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Timeline:
    """What happened to one saga: its status and every attempt, in the order they started."""

    id: str
    name: str
    version: int
    status: str
    reason: str | None
    attempts: tuple[Attempt, ...]
    operator_actions: tuple[OperatorAction, ...]
    parked: str | None = None
    """Why no worker can drive the saga now, while its log ends with that reason."""

    def to_json(self) -> dict[str, Any]:
        """The timeline as one JSON object (the shape ``saga show --json`` prints)."""
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "parked": self.parked,
            "attempts": [a.to_json() for a in self.attempts],
            "operator_actions": [o.to_json() for o in self.operator_actions],
        }


_ACTIONS: dict[type[ev.Event], Literal["cancel", "retry", "skip", "fork"]] = {
    ev.SagaCancelRequested: "cancel", ev.SagaRetryRequested: "retry",
    ev.StepSkipped: "skip", ev.SagaForked: "fork",
}


class _Builder:
    def __init__(self, saga_id: str) -> None:
        self.state = SagaState(saga_id)
        self.attempts: list[Attempt] = []
        self.open: dict[tuple[str, bool, int], Attempt] = {}
        self.actions: list[OperatorAction] = []

    def attempt(self, step: str, compensation: bool, number: int, at: datetime | None) -> Attempt:
        key = (step, compensation, number)
        found = self.open.get(key)
        if found is None:  # an outcome with no recorded start (a log written by hand)
            found = Attempt(step, number, compensation, at)
            self.attempts.append(found)
            self.open[key] = found
        return found

    def add(self, stored: StoredEvent) -> None:
        e = stored.event
        self.state.apply(e)
        match e:
            case ev.StepAttemptStarted() | ev.CompensationAttemptStarted():
                comp = isinstance(e, ev.CompensationAttemptStarted)
                a = Attempt(e.step, e.attempt, comp, e.at)
                self.attempts.append(a)
                self.open[(e.step, comp, e.attempt)] = a
            case ev.StepAttemptFailed() | ev.CompensationAttemptFailed():
                a = self.attempt(e.step, isinstance(e, ev.CompensationAttemptFailed), e.attempt, None)
                a.ended_at = e.at
                a.outcome = "timed_out" if e.timed_out else "lost" if e.lost else "failed"
                a.error_type, a.message = e.error_type, e.message
                a.next_attempt_at = e.next_attempt_at if e.retried else None
                a.calls = _calls(stored.data)
            case ev.StepSucceeded() | ev.StepCompensated():
                a = self.attempt(e.step, isinstance(e, ev.StepCompensated), e.attempt, None)
                a.ended_at, a.outcome = e.at, "succeeded"
                a.calls = _calls(stored.data)
            case ev.SagaCancelRequested() | ev.SagaRetryRequested() | ev.StepSkipped() | ev.SagaForked():
                kind = _ACTIONS[type(e)]
                by = stored.data.get("by")
                self.actions.append(OperatorAction(kind, e.at, by if isinstance(by, str) else None, e.reason))
            case _:
                pass

    def build(self) -> Timeline:
        s = self.state
        return Timeline(s.saga_id, s.name, s.version, s.status.value, s.reason,
                        tuple(self.attempts), tuple(self.actions), s.parked)


def _calls(data: dict[str, Any]) -> list[Any]:
    calls = data.get("calls")
    return list(calls) if isinstance(calls, list) else []


def timeline(saga_id: str, stored: Iterable[StoredEvent]) -> Timeline:
    """The timeline of saga ``saga_id`` from its stored events, oldest first (read once, in order)."""
    builder = _Builder(saga_id)
    for event in stored:
        builder.add(event)
    return builder.build()

"""The attempt projection: a saga's events turned into its attempts, each with one outcome.

Every reader of attempts goes through here: the rows of ``saga_attempts``
kept beside the log, the data and text timelines, telemetry, and the
statistics (whose SQL the tests hold against :func:`outcome_of`). An
:class:`Attempts` takes a saga's events one at a time, oldest first, and hands
out each attempt once it has ended, in the order the attempts started; it
keeps only what it has not handed out, so a log of any length is read in
bounded memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from saga import events as ev

__all__ = ["Attempt", "Attempts", "Failure", "Outcome", "attempt_key", "ended_with", "outcome_of", "project"]

Outcome = Literal["succeeded", "failed", "timed_out", "lost", "running"]
"""How an attempt ended; ``running`` while no outcome is recorded."""

Key = tuple[str, bool, int]
"""An attempt's step, whether it is of the compensation, and its number."""

STARTS = (ev.StepAttemptStarted, ev.CompensationAttemptStarted)
ENDS = (ev.StepSucceeded, ev.StepCompensated, ev.StepAttemptFailed, ev.CompensationAttemptFailed)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def attempt_key(e: ev.Event) -> Key | None:
    """The attempt ``e`` starts or ends (``None``: it is about no attempt)."""
    match e:
        case ev.StepAttemptStarted() | ev.StepAttemptFailed() | ev.StepSucceeded():
            return (e.step, False, e.attempt)
        case ev.CompensationAttemptStarted() | ev.CompensationAttemptFailed() | ev.StepCompensated():
            return (e.step, True, e.attempt)
        case _:
            return None


class Failure(Protocol):
    """How an attempt failed, as far as its outcome goes: a failure event, or the
    :class:`~saga.state.ErrorInfo` the coordinator records it from."""

    @property
    def timed_out(self) -> bool:
        """It ran out of time: its effect is in doubt."""
        ...

    @property
    def lost(self) -> bool:
        """It ended without saying how (its worker died, or its result could not be stored)."""
        ...


def ended_with(failure: Failure | None) -> Outcome:
    """The outcome of an attempt that ended with ``failure`` (``None``: it succeeded): the one rule.

    ``timed_out`` when it ran out of time, else ``lost`` when its worker died
    (or its result could not be stored) before it could say, else ``failed``.
    """
    if failure is None:
        return "succeeded"
    return "timed_out" if failure.timed_out else "lost" if failure.lost else "failed"


def outcome_of(e: ev.Event) -> Outcome | None:
    """The outcome ``e`` records for its attempt, by :func:`ended_with`. ``None``: ``e`` ends no
    attempt.

    A success (of the step or of its compensation) is ``succeeded``; a failure
    is ``timed_out``, ``lost`` or ``failed``.
    """
    match e:
        case ev.StepSucceeded() | ev.StepCompensated():
            return ended_with(None)
        case ev.StepAttemptFailed() | ev.CompensationAttemptFailed():
            return ended_with(e)
        case _:
            return None


@dataclass(slots=True)
class Attempt:
    """One attempt of a step or of its compensation, from its start to its outcome.

    ``outcome`` is ``running`` while no outcome is recorded (see
    :func:`outcome_of`). ``duration`` is the seconds from start to outcome,
    ``None`` while running, for a lost attempt (its end is when the loss was
    noticed, not when it stopped) and when its start is not recorded.
    ``next_attempt_at`` is when the retry that follows a failure is due
    (``None`` when none follows), and ``gave_up`` why none follows a failure
    (``None`` when one does; not part of :meth:`to_json`). ``calls`` lists
    what the step's adapters did, from the outcome event (empty when none
    were recorded). ``result``
    is what a succeeded forward attempt returned (``None`` otherwise), and
    ``seq`` the event of the log that started the attempt (or that ended it,
    when its start is not recorded).
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
    gave_up: str | None = None
    calls: list[Any] = field(default_factory=list)
    result: Any = None
    seq: int = 0

    @property
    def duration(self) -> float | None:
        """Seconds from start to outcome (``None``: running, lost, or its start not recorded)."""
        if self.started_at is None or self.ended_at is None or self.outcome == "lost":
            return None
        return (self.ended_at - self.started_at).total_seconds()

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
            "result": self.result,
            "seq": self.seq,
        }


def _calls(data: Mapping[str, Any] | None) -> list[Any]:
    calls = data.get("calls") if data is not None else None
    return list(calls) if isinstance(calls, list) else []


class Attempts:
    """A saga's attempts as its events arrive, handed out in the order they started, each once it
    has ended.

    Only attempts not handed out yet are kept: one at a time, as the
    coordinator runs them, however long the log.
    """

    def __init__(self) -> None:
        self.started = 0
        self._order: deque[Attempt] = deque()
        self._open: dict[Key, Attempt] = {}

    def _begin(self, key: Key, seq: int, at: datetime | None) -> Attempt:
        a = Attempt(key[0], key[2], key[1], at, seq=seq)
        self._order.append(a)
        self._open[key] = a
        self.started += 1
        return a

    def add(self, seq: int, e: ev.Event, data: Mapping[str, Any] | None = None) -> Attempt | None:
        """Take event ``seq`` of the saga (``data``: its stored JSON, for the calls it records).
        Returns the attempt it starts or ends (``None``: it is about no attempt)."""
        key = attempt_key(e)
        if key is None:
            return None
        if isinstance(e, STARTS):
            return self._begin(key, seq, e.at)
        a = self._open.pop(key, None)
        if a is None:  # an outcome with no recorded start (a log written by hand, or a batch)
            a = self._begin(key, seq, None)
            del self._open[key]
        a.ended_at = e.at
        a.outcome = outcome_of(e) or "running"
        a.calls = _calls(data)
        if isinstance(e, ev.StepAttemptFailed | ev.CompensationAttemptFailed):
            a.error_type, a.message = e.error_type, e.message
            a.next_attempt_at = e.next_attempt_at if e.retried else None
            a.gave_up = e.gave_up
        elif isinstance(e, ev.StepSucceeded):
            a.result = e.result
        return a

    def ended(self) -> Iterator[Attempt]:
        """The attempts, oldest first, that have ended and follow no attempt still running."""
        while self._order and self._order[0].outcome != "running":
            yield self._order.popleft()

    def rest(self) -> Iterator[Attempt]:
        """Every attempt not handed out yet (at the end of the log: those still running)."""
        while self._order:
            yield self._order.popleft()


def project(events: Iterable[tuple[int, ev.Event, Mapping[str, Any] | None]]) -> list[Attempt]:
    """Every attempt of a saga from its events (``(seq, event, data)``, oldest first), in the order
    they started."""
    attempts = Attempts()
    out: list[Attempt] = []
    for seq, e, data in events:
        attempts.add(seq, e, data)
        out += attempts.ended()
    out += attempts.rest()
    return out

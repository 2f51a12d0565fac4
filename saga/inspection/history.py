"""A saga's timeline as data: each attempt with its outcome, and what operators did.

Built from the saga's stored events in one pass, so a caller can feed it
pages of the log as they are read: a :class:`Reader` hands out each attempt
once its outcome is known and keeps nothing it has handed out, so a log of
any length is read in bounded memory. ``saga show --json`` writes
:meth:`Timeline.to_json`'s shape with :func:`write_json`; the text timeline
draws the same facts; the web pages take a window of it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Literal

from saga import events as ev
from saga.state import SagaState
from saga.store.base import StoredEvent

__all__ = [
    "Attempt", "OperatorAction", "Outcome", "Reader", "Timeline", "attempt_at", "timeline", "write_json",
]

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
    did, from the outcome event (empty when none were recorded). ``result``
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
    calls: list[Any] = field(default_factory=list)
    result: Any = None
    seq: int = 0

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
    """What happened to one saga: its status, its input and every attempt, in the order they started."""

    id: str
    name: str
    version: int
    status: str
    reason: str | None
    input: Any
    attempts: tuple[Attempt, ...]
    operator_actions: tuple[OperatorAction, ...]
    parked: str | None = None
    """Why no worker can drive the saga now, while its log ends with that reason."""

    def to_json(self) -> dict[str, Any]:
        """The timeline as one JSON object (the shape ``saga show --json`` prints)."""
        return {
            **self.header(),
            "attempts": [a.to_json() for a in self.attempts],
            "operator_actions": [o.to_json() for o in self.operator_actions],
        }

    def header(self) -> dict[str, Any]:
        """What :meth:`to_json` says of the saga besides its attempts and actions."""
        return {"id": self.id, "name": self.name, "version": self.version, "status": self.status,
                "reason": self.reason, "parked": self.parked, "input": self.input}


_ACTIONS: dict[type[ev.Event], Literal["cancel", "retry", "skip", "fork"]] = {
    ev.SagaCancelRequested: "cancel", ev.SagaRetryRequested: "retry",
    ev.StepSkipped: "skip", ev.SagaForked: "fork",
}

_Key = tuple[str, bool, int]
"""An attempt's step, whether it is of the compensation, and its number."""


class _Attempts:
    """Attempts as their events arrive, handed out in the order they started, each once it has ended.

    Only attempts not handed out yet are kept: one at a time, as the
    coordinator runs them, however long the log.
    """

    def __init__(self) -> None:
        self.started = 0
        self._order: deque[Attempt] = deque()
        self._open: dict[_Key, Attempt] = {}

    def _begin(self, key: _Key, seq: int, at: datetime | None) -> Attempt:
        a = Attempt(key[0], key[2], key[1], at, seq=seq)
        self._order.append(a)
        self._open[key] = a
        self.started += 1
        return a

    def _end(self, key: _Key, seq: int, at: datetime) -> Attempt:
        a = self._open.pop(key, None)
        if a is None:  # an outcome with no recorded start (a log written by hand)
            a = self._begin(key, seq, None)
            del self._open[key]
        a.ended_at = at
        return a

    def add(self, stored: StoredEvent) -> None:
        e = stored.event
        match e:
            case ev.StepAttemptStarted() | ev.CompensationAttemptStarted():
                comp = isinstance(e, ev.CompensationAttemptStarted)
                self._begin((e.step, comp, e.attempt), stored.seq, e.at)
            case ev.StepAttemptFailed() | ev.CompensationAttemptFailed():
                comp = isinstance(e, ev.CompensationAttemptFailed)
                a = self._end((e.step, comp, e.attempt), stored.seq, e.at)
                a.outcome = "timed_out" if e.timed_out else "lost" if e.lost else "failed"
                a.error_type, a.message = e.error_type, e.message
                a.next_attempt_at = e.next_attempt_at if e.retried else None
                a.calls = _calls(stored.data)
            case ev.StepSucceeded() | ev.StepCompensated():
                a = self._end((e.step, isinstance(e, ev.StepCompensated), e.attempt), stored.seq, e.at)
                a.outcome, a.calls = "succeeded", _calls(stored.data)
                a.result = e.result if isinstance(e, ev.StepSucceeded) else None
            case _:
                pass

    def ended(self) -> Iterator[Attempt]:
        """The attempts, oldest first, that have ended and follow no attempt still running."""
        while self._order and self._order[0].outcome != "running":
            yield self._order.popleft()

    def rest(self) -> Iterator[Attempt]:
        """Every attempt not handed out yet (at the end of the log: those still running)."""
        while self._order:
            yield self._order.popleft()


class Reader:
    """Reads one saga's stored events once, oldest first, in bounded memory.

    :meth:`add` folds an event and returns the operator's action it records
    (if it is one); :meth:`ended` then hands out the attempts that have
    ended, in the order they started, and :meth:`rest` those still running
    once the log is read. :attr:`state` is the saga folded so far and
    :attr:`started` how many attempts have started.
    """

    def __init__(self, saga_id: str) -> None:
        self.state = SagaState(saga_id)
        self._attempts = _Attempts()

    @property
    def started(self) -> int:
        """How many attempts the events read so far started."""
        return self._attempts.started

    def add(self, stored: StoredEvent) -> OperatorAction | None:
        """Fold one more event; the operator's action it records, if it records one."""
        e = stored.event
        self.state.apply(e)
        self._attempts.add(stored)
        kind = _ACTIONS.get(type(e))
        if kind is None:
            return None
        by = stored.data.get("by")
        return OperatorAction(kind, e.at, by if isinstance(by, str) else None, str(getattr(e, "reason", "")))

    def ended(self) -> Iterator[Attempt]:
        """The attempts that ended since the last call, oldest first (see :class:`Reader`)."""
        return self._attempts.ended()

    def rest(self) -> Iterator[Attempt]:
        """The attempts not handed out yet, oldest first: at the end of the log, those still running."""
        return self._attempts.rest()

    def header(self) -> dict[str, Any]:
        """``id``, ``name``, ``version``, ``status``, ``reason``, ``parked`` and ``input`` as the log
        says so far."""
        s = self.state
        return Timeline(s.saga_id, s.name, s.version, s.status.value, s.reason, s.input, (), (),
                        s.parked).header()


def _calls(data: dict[str, Any]) -> list[Any]:
    calls = data.get("calls")
    return list(calls) if isinstance(calls, list) else []


def timeline(saga_id: str, stored: Iterable[StoredEvent]) -> Timeline:
    """The timeline of saga ``saga_id`` from its stored events, oldest first (read once, in order)."""
    reader = Reader(saga_id)
    attempts: list[Attempt] = []
    actions: list[OperatorAction] = []
    for event in stored:
        action = reader.add(event)
        attempts += reader.ended()
        if action is not None:
            actions.append(action)
    attempts += reader.rest()
    s = reader.state
    return Timeline(s.saga_id, s.name, s.version, s.status.value, s.reason, s.input,
                    tuple(attempts), tuple(actions), s.parked)


_SPOOL = 1 << 20
"""Characters of a JSON array kept in memory before it goes to a temporary file."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _Array:
    """The items of a JSON array, written one by one: in memory while they are few, then in a
    temporary file."""

    def __init__(self) -> None:
        self.file = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by its user's with
            _SPOOL, mode="w+", encoding="utf-8", newline="\n")
        self.items = 0

    def add(self, item: dict[str, Any]) -> None:
        self.file.write(("," if self.items else "") + _dumps(item))
        self.items += 1

    def copy(self, out: IO[str]) -> None:
        self.file.seek(0)
        shutil.copyfileobj(self.file, out)


def write_json(saga_id: str, stored: Iterable[StoredEvent], out: IO[str]) -> None:
    """Write :meth:`Timeline.to_json` of the saga to ``out`` as one line of compact JSON, reading
    ``stored`` (its events, oldest first) once; the attempts and actions wait in temporary files
    (in memory while they are few) until the status is known, so memory stays flat however long
    the log. Nothing is written unless every event was read."""
    reader = Reader(saga_id)
    attempts, actions = _Array(), _Array()
    with attempts.file, actions.file:
        for event in stored:
            action = reader.add(event)
            for a in reader.ended():
                attempts.add(a.to_json())
            if action is not None:
                actions.add(action.to_json())
        for a in reader.rest():
            attempts.add(a.to_json())
        out.write(_dumps(reader.header())[:-1] + ',"attempts":[')
        attempts.copy(out)
        out.write('],"operator_actions":[')
        actions.copy(out)
        out.write("]}")


def attempt_at(stored: Iterable[StoredEvent]) -> Attempt | None:
    """The attempt the first of ``stored`` starts (or ends, if its start is not recorded), followed
    through the events after it until it ends (or they run out: it is still running). ``None`` when
    the first event is not about an attempt. Reads no further than it needs."""
    attempts = _Attempts()
    for event in stored:
        attempts.add(event)
        if not attempts.started:
            return None
        for a in attempts.ended():
            return a  # attempts are handed out in the order they started: the first is this one
    return next(attempts.rest(), None)

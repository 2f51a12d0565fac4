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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Literal

from saga import events as ev
from saga.attempts import Attempt, Attempts, Outcome
from saga.state import SagaState
from saga.store.base import StoredEvent

__all__ = [
    "Attempt", "OperatorAction", "Outcome", "Reader", "Timeline", "attempt_at", "timeline", "write_json",
]

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

class Reader:
    """Reads one saga's stored events once, oldest first, in bounded memory.

    :meth:`add` folds an event and returns the operator's action it records
    (if it is one); :meth:`ended` then hands out the attempts that have
    ended, in the order they started, and :meth:`rest` those still running
    once the log is read. :attr:`state` is the saga folded so far,
    :attr:`started` how many attempts have started, :attr:`event` the event
    added last and :attr:`attempt` the attempt it started or ended (``None``:
    it is about no attempt), so a reader that draws the events in order can
    draw that attempt where it starts and where it ends.
    """

    def __init__(self, saga_id: str) -> None:
        self.state = SagaState(saga_id)
        self.event: ev.Event | None = None
        self.attempt: Attempt | None = None
        self._attempts = Attempts()

    @property
    def started(self) -> int:
        """How many attempts the events read so far started."""
        return self._attempts.started

    def add(self, stored: StoredEvent) -> OperatorAction | None:
        """Fold one more event; the operator's action it records, if it records one."""
        self.event = e = stored.event
        self.state.apply(e)
        self.attempt = self._attempts.add(stored.seq, e, stored.data)
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
    attempts = Attempts()
    for event in stored:
        attempts.add(event.seq, event.event, event.data)
        if not attempts.started:
            return None
        for a in attempts.ended():
            return a  # attempts are handed out in the order they started: the first is this one
    return next(attempts.rest(), None)

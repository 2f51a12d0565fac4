"""A saga's log as a readable timeline: each attempt, its error, the delay before the next.

It draws the data timeline (:class:`saga.inspection.history.Reader`, whose
attempts come from :mod:`saga.attempts`): an attempt's lines say what its
record says, not a second reading of the events. The log is read once, in
pages, and the lines wait in a temporary file (in memory while they are few)
until the header is known, so a saga of any length is shown in flat memory.
A long run of attempts that failed the same way is summarised in one line.
Every line is escaped for a terminal: text that came from a service cannot
forge lines or send control sequences.
"""

from __future__ import annotations

import json
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from saga import events as ev
from saga.attempts import Attempt, Outcome
from saga.calls import Call
from saga.inspection.history import Reader
from saga.secrets.sealing import redacted
from saga.store.base import EventLog, StoredEvent
from saga.text import escape

__all__ = ["PAGE", "render", "show", "stream", "timeline"]

PAGE = 1000
"""How many events one read of the log returns."""

_EDGE = 2
"""How many attempts of a run of identical failures are shown at each end of it."""

_SPOOL = 1 << 20
"""Characters of timeline kept in memory before they go to a temporary file."""


def stream(
    store: EventLog, saga_id: str, *, after: int = 0, through: int | None = None, page: int = PAGE
) -> Iterator[StoredEvent]:
    """A saga's events by ``seq`` (those after ``after``, up to ``through``), read ``page`` at a time;
    raises :class:`~saga.SagaNotFound` if the saga does not exist."""
    while through is None or after < through:
        limit = page if through is None else min(page, through - after)
        batch = store.load(saga_id, after=after, limit=limit)
        yield from batch
        if len(batch) < limit:
            return
        after = batch[-1].seq


def _subject(e: ev.Event) -> str:
    """Whom an event is about: a step, or the saga as a whole."""
    if isinstance(e, ev.CompensationStarted | ev.SagaFailed | ev.SagaForked):
        return "saga"  # they name the step that caused them, but are about the saga
    step = getattr(e, "step", None)
    return step if isinstance(step, str) else "saga"


def _kind(a: Attempt) -> str:
    return "compensation attempt" if a.compensation else "attempt"


_HOW: dict[Outcome, str] = {"failed": "failed", "timed_out": "timed out", "lost": "ended in doubt"}
"""How a failed attempt ended, in words, by its outcome (lost: its worker could not say)."""

_NO_TIME = " " * len(f"+{0:8.3f}s")


def _call(call: Call) -> str:
    """One call an attempt's adapter made: what, where, how it ended, how long it took."""
    how: str = call.outcome
    if call.error is not None:
        how += f" {call.error.status}" if call.error.status is not None else f" {call.error.type}"
    return f"  \N{RIGHTWARDS ARROW} {call.adapter} {call.target}: {how} ({call.duration:.3f}s)"


def _ended(a: Attempt) -> str:
    """How an attempt ended, in words: its result, or its error and what follows."""
    if a.outcome == "succeeded":
        return (f"compensated on attempt {a.attempt}" if a.compensation
                else f"succeeded on attempt {a.attempt}: {json.dumps(a.result)}")
    text = f"{_kind(a)} {a.attempt} {_HOW[a.outcome]}: {a.error_type}: {a.message}"
    if a.next_attempt_at is not None and a.ended_at is not None:
        text += f"; next attempt in {(a.next_attempt_at - a.ended_at).total_seconds():.3f}s"
    elif a.gave_up:
        text += f"; gave up ({a.gave_up})"
    return text


def _describe(e: ev.Event) -> str:
    """What an event that is about no attempt says, in words."""
    match e:
        case ev.SagaStarted():
            origin = e.forked_from
            forked = "" if origin is None else f", forked from saga {origin['id']} at step {origin['step']}"
            return f"started (input {json.dumps(e.input)}{forked})"
        case ev.StepFailed():
            return f"failed: {e.reason}"
        case ev.CompensationStarted():
            return f"compensating: {e.reason}"
        case ev.CompensationFailed():
            return f"compensation gave up: {e.reason}"
        case ev.SagaCompleted():
            return "completed"
        case ev.SagaCompensated():
            return "compensated"
        case ev.SagaFailed():
            return f"failed: compensation of {e.step} gave up; needs an operator"
        case ev.SagaRetryRequested():
            return "operator asked to retry" + _who(e.by, e.reason)
        case ev.SagaCancelRequested():
            return "operator asked to cancel" + _who(e.by, e.reason)
        case ev.StepSkipped():
            return f"skipped by an operator with result {json.dumps(e.result)}" + _who(e.by, e.reason)
        case ev.StepCopied():
            return f"copied from saga {e.copied_from}, not run: {json.dumps(e.result)}"
        case ev.SagaForked():
            return f"forked as saga {e.fork} from step {e.step}" + _who(e.by, e.reason)
        case ev.SagaParked():
            return f"parked: {e.reason}"
    return type(e).__name__  # pragma: no cover - every other event type is matched above


def _who(by: str | None, reason: str) -> str:
    """``: REASON (by NAME)`` for an operator's event, each part only if recorded."""
    return (f": {reason}" if reason else "") + (f" (by {by})" if by else "")


_Unit = tuple[Attempt, bool]
"""An attempt to draw, and whether its start is drawn too (it is, when its outcome follows it)."""


class _Printer:
    """Turns the data timeline into lines, in the order of the events: each event that is about
    no attempt, each attempt where it starts and where it ends, each long run of attempts that
    failed the same way folded into one line."""

    def __init__(self, emit: Callable[[str, str, str], None]) -> None:
        self.origin: datetime | None = None
        self.emit = emit
        self.pending: Attempt | None = None  # started; its start line waits for what comes next
        self.run_key: tuple[object, ...] | None = None
        self.shown = 0  # attempts of the current run shown at its head
        self.tail: deque[_Unit] = deque(maxlen=_EDGE)
        self.hidden: _Unit | None = None  # the first hidden attempt, shown if it is alone
        self.hidden_count = 0
        self.hidden_last = 0

    def line(self, at: datetime | None, subject: str, text: str) -> None:
        at = at or self.origin
        offset = 0.0 if at is None or self.origin is None else (at - self.origin).total_seconds()
        self.emit(f"+{offset:8.3f}s", escape(subject), escape(text))

    def read(self, e: ev.Event, a: Attempt | None) -> None:
        """Draw event ``e``; ``a``: the attempt it starts or ends (``None``: it is about none)."""
        self.origin = self.origin or e.at
        if a is None:
            self.start_alone()
            self.flush()
            self.line(e.at, _subject(e), _describe(e))
        elif a.outcome == "running":  # e starts a
            self.start_alone()
            self.pending = a
        else:  # e ends a: drawn with its start if nothing came between
            with_start = self.pending is a
            if not with_start:
                self.start_alone()
            self.pending = None
            if a.outcome == "succeeded":
                self.flush()
                self.show((a, with_start))
            else:
                self.failure((a, with_start))

    def start_alone(self) -> None:
        """Draw the start of the pending attempt, when something other than its outcome follows it."""
        if self.pending is not None:
            a, self.pending = self.pending, None
            self.flush()
            self.line(a.started_at, a.step, f"{_kind(a)} {a.attempt} started")

    def failure(self, unit: _Unit) -> None:
        a = unit[0]
        key = (a.compensation, a.step, a.error_type, a.message, a.outcome)
        if key != self.run_key:
            self.flush()
            self.run_key = key
        if self.shown < _EDGE:
            self.shown += 1
            self.show(unit)
            return
        if len(self.tail) == _EDGE:
            oldest = self.tail.popleft()
            if not self.hidden_count:
                self.hidden = oldest
            self.hidden_count += 1
            self.hidden_last = oldest[0].attempt
        self.tail.append(unit)

    def show(self, unit: _Unit) -> None:
        a, with_start = unit
        if with_start:
            self.line(a.started_at, a.step, f"{_kind(a)} {a.attempt} started")
        self.line(a.ended_at, a.step, _ended(a))
        for call in a.calls:
            self.emit(_NO_TIME, "", escape(_call(Call.model_validate(call))))

    def flush(self) -> None:
        """End the current run of identical failures."""
        if self.hidden_count == 1 and self.hidden is not None:
            self.show(self.hidden)
        elif self.hidden_count and self.hidden is not None:
            first = self.hidden[0]
            self.line(first.ended_at, first.step, (
                f"{_kind(first)}s {first.attempt:,}\N{EN DASH}{self.hidden_last:,} "
                f"{_HOW[first.outcome]} the same way ({first.error_type}: {first.message})"
            ))
        for unit in self.tail:
            self.show(unit)
        self.run_key, self.shown, self.hidden, self.hidden_count = None, 0, None, 0
        self.tail.clear()

    def close(self) -> None:
        self.start_alone()
        self.flush()


def timeline(saga_id: str, stored: Iterable[StoredEvent]) -> Iterator[str]:
    """The timeline of one saga, line by line, from its stored events (oldest first, read once)
    as :class:`~saga.inspection.history.Reader` reads them: a header with what the whole log
    says, then each attempt where it starts and ends and each other event, each long run of
    attempts that failed the same way summarised in one line."""
    with tempfile.SpooledTemporaryFile(_SPOOL, mode="w+", encoding="utf-8", newline="\n") as body:
        width = 4

        def write(at: str, subject: str, text: str) -> None:
            nonlocal width
            width = max(width, len(subject))
            body.write(f"{at}\0{subject}\0{text}\n")  # escaped fields hold no NUL or newline

        printer = _Printer(write)
        reader = Reader(saga_id)
        for event in stored:
            reader.add(event)
            assert reader.event is not None
            printer.read(reader.event, reader.attempt)
            deque(reader.ended(), maxlen=0)  # the printer keeps the attempts it still draws
        printer.close()
        s = reader.state
        yield escape(f"saga {s.saga_id}  ({s.name} v{s.version})  {s.status.value}")
        if s.reason:
            yield escape(f"  reason: {s.reason}")
        if s.parked:
            yield escape(f"  parked: {s.parked}")
        if printer.origin is not None:
            yield f"  started {printer.origin.isoformat(timespec='milliseconds')}"
        body.seek(0)
        for record in body:
            at, subject, text = record.rstrip("\n").split("\0")
            yield f"  {at}  {subject:<{width}}  {text}"


def show(store: EventLog, saga_id: str) -> Iterator[str]:
    """The timeline of one saga in ``store``, line by line, its log read in pages.

    Raises :class:`~saga.SagaNotFound` (before the first line) if the saga does not exist.
    """
    return timeline(saga_id, redacted(stream(store, saga_id)))  # secrets as stars


def render(saga_id: str, events: Iterable[ev.Event]) -> str:
    """The timeline of one saga as one text, from its events (``seq`` 1, 2, ... in order), as
    they would be stored."""
    return "\n".join(timeline(saga_id, (
        StoredEvent(saga_id=saga_id, seq=seq, type=e.type_name(), data=e.to_data(), recorded_at=e.at,
                    schema_version=e.schema_version)
        for seq, e in enumerate(events, 1))))

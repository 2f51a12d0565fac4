"""A saga's log as a readable timeline: each attempt, its error, the delay before the next.

The log is read once, in pages, and the lines wait in a temporary file (in
memory while they are few) until the header is known, so a saga of any length
is shown in flat memory. A long run of attempts that failed the same way is
summarised in one line. Every line is escaped for a terminal: text that came
from a service cannot forge lines or send control sequences.
"""

from __future__ import annotations

import json
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from saga import events as ev
from saga.calls import Call
from saga.secrets.sealing import redacted
from saga.state import fold
from saga.store.base import EventLog, StoredEvent
from saga.text import escape

__all__ = ["PAGE", "render", "show", "stream", "timeline"]

PAGE = 1000
"""How many events one read of the log returns."""

_EDGE = 2
"""How many attempts of a run of identical failures are shown at each end of it."""

_SPOOL = 1 << 20
"""Characters of timeline kept in memory before they go to a temporary file."""

_Start = ev.StepAttemptStarted | ev.CompensationAttemptStarted
_Failure = ev.StepAttemptFailed | ev.CompensationAttemptFailed


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


def _kind(e: ev.Event) -> str:
    compensation = (ev.CompensationAttemptStarted, ev.CompensationAttemptFailed)
    return "compensation attempt" if isinstance(e, compensation) else "attempt"


def _how(e: _Failure) -> str:
    # lost: no outcome could be recorded (its worker died, or its result was too large)
    return "timed out" if e.timed_out else "ended in doubt" if e.lost else "failed"


_NO_TIME = " " * len(f"+{0:8.3f}s")


def _call(call: Call) -> str:
    """One call an attempt's adapter made: what, where, how it ended, how long it took."""
    how: str = call.outcome
    if call.error is not None:
        how += f" {call.error.status}" if call.error.status is not None else f" {call.error.type}"
    return f"  \N{RIGHTWARDS ARROW} {call.adapter} {call.target}: {how} ({call.duration:.3f}s)"


def _describe(e: ev.Event) -> str:
    """What happened, in words."""
    match e:
        case ev.SagaStarted():
            origin = e.forked_from
            forked = "" if origin is None else f", forked from saga {origin['id']} at step {origin['step']}"
            return f"started (input {json.dumps(e.input)}{forked})"
        case ev.StepAttemptStarted() | ev.CompensationAttemptStarted():
            return f"{_kind(e)} {e.attempt} started"
        case ev.StepAttemptFailed() | ev.CompensationAttemptFailed():
            text = f"{_kind(e)} {e.attempt} {_how(e)}: {e.error_type}: {e.message}"
            if e.retried and e.next_attempt_at is not None:
                delay = (e.next_attempt_at - e.at).total_seconds()
                text += f"; next attempt in {delay:.3f}s"
            elif e.gave_up:
                text += f"; gave up ({e.gave_up})"
            return text
        case ev.StepSucceeded():
            return f"succeeded on attempt {e.attempt}: {json.dumps(e.result)}"
        case ev.StepFailed():
            return f"failed: {e.reason}"
        case ev.CompensationStarted():
            return f"compensating: {e.reason}"
        case ev.StepCompensated():
            return f"compensated on attempt {e.attempt}"
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
    return type(e).__name__  # pragma: no cover - every event type is matched above


def _who(by: str | None, reason: str) -> str:
    """``: REASON (by NAME)`` for an operator's event, each part only if recorded."""
    return (f": {reason}" if reason else "") + (f" (by {by})" if by else "")


class _Printer:
    """Turns events into lines, folding each long run of identical failures into one."""

    def __init__(self, emit: Callable[[str, str, str], None]) -> None:
        self.origin: datetime | None = None
        self.emit = emit
        self.pending: _Start | None = None  # a start whose outcome is not read yet
        self.run_key: tuple[object, ...] | None = None
        self.shown = 0  # attempts of the current run shown at its head
        self.tail: deque[tuple[ev.Event, ...]] = deque(maxlen=_EDGE)
        self.hidden: tuple[ev.Event, ...] = ()  # the first hidden attempt, shown if it is alone
        self.hidden_count = 0
        self.hidden_last = 0

    def line(self, e: ev.Event, text: str | None = None) -> None:
        at = f"+{(e.at - (self.origin or e.at)).total_seconds():8.3f}s"
        self.emit(at, escape(_subject(e)), escape(_describe(e) if text is None else text))
        if text is None:
            for call in getattr(e, "calls", ()):
                self.emit(_NO_TIME, "", escape(_call(call)))

    def event(self, e: ev.Event) -> None:
        self.origin = self.origin or e.at
        if self.pending is not None:
            start, self.pending = self.pending, None
            if isinstance(e, _Failure) and (e.step, e.attempt, _kind(e)) == (
                start.step, start.attempt, _kind(start)
            ):
                self.attempt((start, e))
                return
            self.flush()
            self.line(start)
        if isinstance(e, _Start):
            self.pending = e
        elif isinstance(e, _Failure):
            self.attempt((e,))
        else:
            self.flush()
            self.line(e)

    def attempt(self, unit: tuple[ev.Event, ...]) -> None:
        failure = unit[-1]
        assert isinstance(failure, _Failure)
        key = (_kind(failure), failure.step, failure.error_type, failure.message,
               failure.timed_out, failure.lost)
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
            self.hidden_last = _number(oldest)
        self.tail.append(unit)

    def show(self, unit: Iterable[ev.Event]) -> None:
        for e in unit:
            self.line(e)

    def flush(self) -> None:
        """End the current run of identical failures."""
        if self.hidden_count == 1:
            self.show(self.hidden)
        elif self.hidden_count:
            first = self.hidden[-1]
            assert isinstance(first, _Failure)
            self.line(first, (
                f"{_kind(first)}s {_number(self.hidden):,}\N{EN DASH}{self.hidden_last:,} {_how(first)} "
                f"the same way ({first.error_type}: {first.message})"
            ))
        for unit in self.tail:
            self.show(unit)
        self.run_key, self.shown, self.hidden, self.hidden_count = None, 0, (), 0
        self.tail.clear()

    def close(self) -> None:
        if self.pending is not None:
            self.flush()
            self.line(self.pending)
            self.pending = None
        self.flush()


def _number(unit: Iterable[ev.Event]) -> int:
    return next(e.attempt for e in unit if isinstance(e, _Failure))


def timeline(saga_id: str, events: Iterable[ev.Event]) -> Iterator[str]:
    """The timeline of one saga, line by line, from its events (oldest first, read once):
    a header with what the whole log says, then one line per event, each long run of
    identical failures summarised in one line."""
    with tempfile.SpooledTemporaryFile(_SPOOL, mode="w+", encoding="utf-8", newline="\n") as body:
        width = 4

        def write(at: str, subject: str, text: str) -> None:
            nonlocal width
            width = max(width, len(subject))
            body.write(f"{at}\0{subject}\0{text}\n")  # escaped fields hold no NUL or newline

        printer = _Printer(write)

        def printed() -> Iterator[ev.Event]:
            for e in events:
                printer.event(e)
                yield e
            printer.close()

        view = fold(saga_id, printed()).view()
        yield escape(f"saga {view.saga_id}  ({view.name} v{view.version})  {view.status.value}")
        if view.reason:
            yield escape(f"  reason: {view.reason}")
        if view.parked:
            yield escape(f"  parked: {view.parked}")
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
    return timeline(saga_id, (s.event for s in redacted(stream(store, saga_id))))  # secrets as stars


def render(saga_id: str, events: Iterable[ev.Event]) -> str:
    """The timeline of one saga as one text."""
    return "\n".join(timeline(saga_id, events))

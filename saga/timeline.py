"""A saga's log as a readable timeline: each attempt, its error, the delay before the next."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from . import events as ev
from .state import fold
from .store.base import StoredEvent

__all__ = ["render"]


def _at(e: ev.Event, origin: datetime) -> str:
    return f"+{(e.at - origin).total_seconds():8.3f}s"


def _describe(e: ev.Event) -> tuple[str, str]:
    """(subject, what happened) for one event."""
    match e:
        case ev.SagaStarted():
            return "saga", f"started (input {json.dumps(e.input)})"
        case ev.StepAttemptStarted() | ev.CompensationAttemptStarted():
            kind = "compensation attempt" if isinstance(e, ev.CompensationAttemptStarted) else "attempt"
            return e.step, f"{kind} {e.attempt} started"
        case ev.StepAttemptFailed() | ev.CompensationAttemptFailed():
            kind = "compensation attempt" if isinstance(e, ev.CompensationAttemptFailed) else "attempt"
            # lost: no outcome could be recorded (its worker died, or its result was too large)
            how = "timed out" if e.timed_out else "ended in doubt" if e.lost else "failed"
            text = f"{kind} {e.attempt} {how}: {e.error_type}: {e.message}"
            if e.retried and e.next_attempt_at is not None:
                delay = (e.next_attempt_at - e.at).total_seconds()
                text += f"; next attempt in {delay:.3f}s"
            elif e.gave_up:
                text += f"; gave up ({e.gave_up})"
            return e.step, text
        case ev.StepSucceeded():
            return e.step, f"succeeded on attempt {e.attempt}: {json.dumps(e.result)}"
        case ev.StepFailed():
            return e.step, f"failed: {e.reason}"
        case ev.CompensationStarted():
            return "saga", f"compensating: {e.reason}"
        case ev.StepCompensated():
            return e.step, f"compensated on attempt {e.attempt}"
        case ev.CompensationFailed():
            return e.step, f"compensation gave up: {e.reason}"
        case ev.SagaCompleted():
            return "saga", "completed"
        case ev.SagaCompensated():
            return "saga", "compensated"
        case ev.SagaFailed():
            return "saga", f"failed: compensation of {e.step} gave up; needs an operator"
        case ev.SagaRetryRequested():
            return "saga", "operator asked to retry" + (f": {e.reason}" if e.reason else "")
        case ev.SagaCancelRequested():
            return "saga", "operator asked to cancel" + (f": {e.reason}" if e.reason else "")
    return "saga", type(e).__name__  # pragma: no cover - every event type is matched above


def render(saga_id: str, history: Sequence[StoredEvent]) -> str:
    """The timeline of one saga, as lines of text."""
    events = [s.event for s in history]
    view = fold(saga_id, events).view()
    origin = events[0].at if events else datetime.now()
    lines = [f"saga {saga_id}  ({view.name} v{view.version})  {view.status.value}"]
    if view.reason:
        lines.append(f"  reason: {view.reason}")
    lines.append(f"  started {origin.isoformat(timespec='milliseconds')}")
    width = max([len(_describe(e)[0]) for e in events] + [4])
    for e in events:
        subject, text = _describe(e)
        lines.append(f"  {_at(e, origin)}  {subject:<{width}}  {text}")
    return "\n".join(lines)

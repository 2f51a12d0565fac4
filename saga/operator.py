"""Operator actions: cancel a running saga, retry a failed one.

An operator appends without holding the saga's lease (no definition is
needed, so the command line can do it): the append is fenced by ``seq``
alone, and a coordinator driving the saga meanwhile notices the new event
at its next append and reloads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from . import events as ev
from .clock import Clock
from .codec import InvalidValue, to_json_value
from .errors import ConcurrencyError, InvalidInput, InvalidOperation
from .reading import load_state
from .state import SagaState, SagaStatus, SagaView
from .store.base import EventLog

__all__ = ["cancel", "retry"]

_ATTEMPTS = 8


def cancel(store: EventLog, clock: Clock, saga_id: str, *, reason: str = "") -> SagaView:
    """Stop a running saga's forward progress; a worker then compensates it.

    Cancelling a saga already cancelled is a no-op; a saga that is not
    running raises :class:`~saga.errors.InvalidOperation`.
    """
    text = _reason(reason)
    return _append(
        store, clock, saga_id,
        allowed=SagaStatus.RUNNING,
        event=lambda now: ev.SagaCancelRequested(reason=text, at=now),
        already=lambda s: s.cancel_requested is not None,
        verb="cancelled",
    )


def retry(store: EventLog, clock: Clock, saga_id: str, *, reason: str = "") -> SagaView:
    """Resume a failed saga's compensation, with a fresh attempt budget."""
    text = _reason(reason)
    return _append(
        store, clock, saga_id,
        allowed=SagaStatus.FAILED,
        event=lambda now: ev.SagaRetryRequested(reason=text, at=now),
        already=lambda s: False,
        verb="retried",
    )


def _append(
    store: EventLog,
    clock: Clock,
    saga_id: str,
    *,
    allowed: SagaStatus,
    event: Callable[[datetime], ev.Event],
    already: Callable[[SagaState], bool],
    verb: str,
) -> SagaView:
    for _ in range(_ATTEMPTS):
        state = load_state(store, saga_id)
        if state.status is not allowed:
            raise InvalidOperation(
                f"saga {saga_id} is {state.status.value}: only a {allowed.value} saga can be {verb}"
            )
        if already(state):
            return state.view()
        now = clock.now()
        e = event(now)
        state.apply(e)
        try:
            store.append(saga_id, state.seq - 1, [e], status=state.status, wake_at=now, now=now)
        except ConcurrencyError:
            continue
        return state.view()
    raise ConcurrencyError(f"saga {saga_id}: the log kept moving; try again")


def _reason(reason: object) -> str:
    if not isinstance(reason, str) or len(reason) > 1000:
        raise InvalidInput("reason must be a string of at most 1000 characters")
    try:
        to_json_value(reason)  # valid Unicode, no NUL: what the log can store
    except InvalidValue as e:
        raise InvalidInput(f"reason cannot be stored: {str(e).removeprefix('$: ')}") from None
    return reason

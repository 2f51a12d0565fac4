"""A saga a worker cannot drive: it backs off, and its log says why, once.

A drive that fails for a reason retrying at once will not fix (the saga's
secrets cannot be opened, its decision raised, its definition does not fit
its log) would otherwise be claimed again at once, for ever, and starve the
other sagas. :func:`park` lets go of the lease and moves the saga's wake-up
time back instead, each time further: the pause is the time since the saga
was parked, from :data:`FIRST_PAUSE` to :data:`LONGEST_PAUSE`, so it doubles
from pass to pass. It appends a :class:`~saga.events.SagaParked` when the
reason first appears or changes, not on every pass. The pause follows from
the log (when the reason was recorded) and the clock, so whichever worker
tries next carries the same backoff on; the wake-up time it writes is the
index's business only (rebuilt from the log, the saga is due sooner, which is
safe).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from saga import events as ev
from saga._engine.execution import error_name
from saga.clock import Clock
from saga.codec import printable
from saga.errors import DefinitionMismatch
from saga.secrets.keys import SecretError
from saga.store.base import EventLog

__all__ = ["FIRST_PAUSE", "LONGEST_PAUSE", "Parked", "back_off", "park", "why"]

FIRST_PAUSE = 1.0
"""Seconds before a newly parked saga is tried again (longer than the pause a worker with
``--until-idle`` waits for a saga due soon, so that it does not wait for a parked one)."""

LONGEST_PAUSE = 300.0
"""The most seconds between two tries of a parked saga."""

_REASON = 1000
"""The most characters of a reason the log keeps."""


@dataclass(frozen=True, slots=True)
class Parked:
    """What :func:`park` did: why, whether the log heard that reason just now, and until when
    the saga rests."""

    saga_id: str
    reason: str
    new: bool
    until: datetime


def why(error: BaseException) -> tuple[str, str]:
    """The error type and the reason a drive that failed with ``error`` records."""
    if isinstance(error, ValidationError):  # the values are left out: they may be secret
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
                            for e in error.errors(include_input=False))
    else:
        try:
            message = str(error)
        except Exception as e:  # a __str__ that fails
            message = f"<the message could not be read: {type(e).__name__}>"
    name = error_name(error)
    if isinstance(error, SecretError):
        reason = f"cannot open secrets: {message}"
    elif isinstance(error, DefinitionMismatch):
        reason = f"the definition does not fit the log: {message}"
    else:
        reason = f"the drive failed: {type(error).__name__}: {message}"
    reason = printable(reason)
    if len(reason) > _REASON:
        reason = f"{reason[:_REASON]}… ({len(reason):,} characters)"
    return name, reason


def back_off(store: EventLog, clock: Clock, owner: str, saga_id: str) -> None:
    """Let go of ``owner``'s lease on saga ``saga_id`` and make it due :data:`FIRST_PAUSE`
    seconds from now, appending nothing: for a drive the store failed (an outage, which its
    log need not hear of, or an event that cannot be read), which is tried again soon but
    not at once. Raises the store's errors, as :func:`park` does."""
    summary = store.summary(saga_id)
    now = clock.now()
    store.append(saga_id, summary.last_seq, [], status=summary.status,
                 wake_at=now + timedelta(seconds=FIRST_PAUSE) if summary.status.is_active else None,
                 now=now, owner=owner, lease_until=None)


def park(store: EventLog, clock: Clock, owner: str, saga_id: str, error: BaseException
         ) -> Parked | None:
    """Back off from saga ``saga_id``, which ``owner`` failed to drive with ``error``: let go
    of its lease, make it due again later, and record why if the log does not say so yet.

    ``None`` if the saga is no longer active (nothing to back off from). Raises
    the store's errors: :class:`~saga.errors.ConcurrencyError` if the log moved
    on meanwhile (it is due again then), :class:`~saga.errors.LeaseHeld` if
    another worker holds it now.
    """
    error_type, reason = why(error)
    summary = store.summary(saga_id)
    if not summary.status.is_active:
        store.release(owner, saga_id)
        return None
    last = store.load(saga_id, after=summary.last_seq - 1, limit=1)
    previous = last[0].event if last else None
    now = clock.now()
    events: list[ev.Event] = []
    if isinstance(previous, ev.SagaParked) and (previous.error_type, previous.reason) == (
        error_type, reason
    ):
        pause = min(max((now - previous.at).total_seconds(), FIRST_PAUSE), LONGEST_PAUSE)
    else:
        pause = FIRST_PAUSE
        events.append(ev.SagaParked(reason=reason, error_type=error_type, at=now))
    until = now + timedelta(seconds=pause)
    store.append(saga_id, summary.last_seq, events, status=summary.status, wake_at=until, now=now,
                 owner=owner, lease_until=None)
    return Parked(saga_id, reason, new=bool(events), until=until)

"""Operator requests on many sagas at once: select them by the filters of ``saga list``, then
cancel or retry each one in its own transaction.

:func:`select` is the one place that turns filters into saga ids. It asks the
store for what the store can answer (status, name) and folds each candidate's
log for the rest (the step that failed, an attempt's error type, the start
time window): correct on every backend, if slow on a large store. A store
that can answer every filter itself can take its place without changing
:func:`act` or the command line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from . import events as ev
from .clock import Clock
from .errors import InvalidInput, InvalidOperation, SagaNotFound
from .operator import Request, check_by, check_reason, request
from .state import SagaStatus
from .store.base import EventLog

__all__ = ["BulkResult", "Filters", "act", "select"]

_ALL = 2**62
"""A page size larger than any store: the candidates are read in one query."""


@dataclass(frozen=True, slots=True)
class Filters:
    """Which sagas a bulk request is for; every filter given must match.

    ``failed_step``: a step of the saga failed for good (``StepFailed``).
    ``error_type``: an attempt of the saga (forward or compensation) failed
    with this error type. ``since``/``until``: the saga started in this
    window (inclusive).
    """

    status: SagaStatus | None = None
    name: str | None = None
    failed_step: str | None = None
    error_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def empty(self) -> bool:
        """Whether no filter is given (a bulk request then refuses to run)."""
        return all(v is None for v in (self.status, self.name, self.failed_step,
                                       self.error_type, self.since, self.until))


def select(store: EventLog, filters: Filters) -> Iterator[str]:
    """The ids of the sagas that match every filter, most recently updated first.

    Raises :class:`~saga.InvalidInput` when ``filters`` is empty.
    """
    if filters.empty:
        raise InvalidInput("a bulk request needs at least one filter (--status, --name, "
                           "--failed-step, --error-type, --since, --until)")
    for row in store.find(status=filters.status, name=filters.name, limit=_ALL):
        if filters.since is not None and row.created_at < filters.since:
            continue
        if filters.until is not None and row.created_at > filters.until:
            continue
        if (filters.failed_step is None and filters.error_type is None) or _log_matches(
            store, row.saga_id, filters
        ):
            yield row.saga_id


def _log_matches(store: EventLog, saga_id: str, filters: Filters) -> bool:
    failed_steps: set[str] = set()
    error_types: set[str] = set()
    try:
        for stored in store.load(saga_id):
            e = stored.event
            if isinstance(e, ev.StepFailed):
                failed_steps.add(e.step)
            elif isinstance(e, ev.StepAttemptFailed | ev.CompensationAttemptFailed):
                error_types.add(e.error_type)
    except SagaNotFound:
        return False
    return ((filters.failed_step is None or filters.failed_step in failed_steps)
            and (filters.error_type is None or filters.error_type in error_types))


@dataclass(slots=True)
class BulkResult:
    """What a bulk request did: the ids it acted on, and each skipped id with why."""

    acted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def act(
    store: EventLog,
    clock: Clock,
    saga_ids: Iterable[str],
    kind: Request,
    *,
    reason: str = "",
    by: str | None = None,
) -> BulkResult:
    """Make request ``kind`` (``cancel`` or ``retry``) of each saga, each in its own transaction.

    A saga that cannot take it (its status changed since it was selected,
    another operator got there first) is skipped with the reason; the others
    are still acted on. Checks ``reason`` and ``by`` before acting on any.
    """
    text, who = check_reason(reason), check_by(by)
    result = BulkResult()
    for saga_id in saga_ids:
        try:
            _, appended = request(store, clock, saga_id, kind, reason=text, by=who)
        except (InvalidOperation, SagaNotFound) as e:
            result.skipped.append((saga_id, str(e)))
            continue
        if appended:
            result.acted.append(saga_id)
        else:
            result.skipped.append((saga_id, f"saga {saga_id} is already cancelled"))
    return result

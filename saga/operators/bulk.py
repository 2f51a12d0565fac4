"""Operator requests on many sagas at once: select them by the filters of ``saga list``, then
cancel or retry each one in its own transaction.

:func:`select` turns filters into saga ids with the query of ``saga list``
(:meth:`saga.store.EventLog.list_sagas`): on a SQL store the database answers
every filter from its indexes, page by page; on the memory store it reads
each saga's events. Selecting for a request keeps only the sagas it would
change: those in the status it acts on, each read to be sure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from saga._engine.reading import load_state
from saga.clock import Clock
from saga.errors import InvalidInput, InvalidOperation, SagaNotFound
from saga.operators.actions import APPLIES_TO, Request, changes, check_by, check_reason, request
from saga.state import SagaStatus
from saga.store import reads
from saga.store.base import EventLog

__all__ = ["BulkResult", "Filters", "act", "select"]


@dataclass(frozen=True, slots=True)
class Filters:
    """Which sagas a bulk request is for; every filter given must match.

    The filters of ``saga list``, meaning what they mean there
    (:meth:`saga.store.EventLog.list_sagas`): ``failed_step``: the step that
    failed for good last (``StepFailed``); ``error_type``: an attempt of the
    saga (forward or compensation) failed with this error type;
    ``since``/``until``: the saga started at or after ``since`` and before
    ``until``.
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


def select(store: EventLog, filters: Filters, kind: Request | None = None) -> Iterator[str]:
    """The ids of the sagas that match every filter, newest started first: those
    :meth:`~saga.store.EventLog.list_sagas` lists, read a page at a time.

    With ``kind``, only the sagas that request would change now (see
    :func:`saga.operators.actions.changes`): a running saga not cancelled yet for
    ``cancel``, a failed one for ``retry``; none if ``filters.status`` is another.
    Raises :class:`~saga.InvalidInput` when ``filters`` is empty.
    """
    if filters.empty:
        raise InvalidInput("a bulk request needs at least one filter (--status, --name, "
                           "--failed-step, --error-type, --since, --until)")
    status = filters.status
    if kind is not None:
        if status not in (None, APPLIES_TO[kind]):
            return
        status = APPLIES_TO[kind]
    cursor: str | None = None
    while True:
        page = store.list_sagas(
            status=None if status is None else status.value,
            name=filters.name, failed_step=filters.failed_step, error_type=filters.error_type,
            since=filters.since, until=filters.until, limit=reads.MAX_LIMIT, cursor=cursor)
        for row in page.rows:
            if kind is None or _changes(store, row.saga_id, kind):
                yield row.saga_id
        if page.cursor is None:
            return
        cursor = page.cursor


def _changes(store: EventLog, saga_id: str, kind: Request) -> bool:
    try:
        return changes(load_state(store, saga_id), kind)
    except SagaNotFound:  # deleted since it was listed
        return False


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

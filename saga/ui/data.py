"""What the pages show, read from the log: the list of sagas, one saga's timeline, the statistics.

Everything the web pages need from the store goes through this module, read
only, and comes back as plain JSON-ready values with every secret shown as
``**********``. The list and the statistics are the store's own read side
(:meth:`~saga.store.EventLog.list_sagas`, :meth:`~saga.store.EventLog.stats`),
as ``saga list`` and ``saga stats`` read them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from saga.errors import InvalidInput
from saga.inspection.history import Attempt, Reader, attempt_at
from saga.inspection.timeline import stream
from saga.secrets.keys import redact_json
from saga.secrets.sealing import redacted
from saga.state import SagaStatus
from saga.store.base import EventLog, EventStore
from saga.text import shorten
from saga.ui.params import Query

__all__ = ["MAX_PAGE", "PAGE_ATTEMPTS", "ListFilters", "Page", "attempt_detail", "list_sagas", "open_store",
           "saga_page", "stats"]

MAX_PAGE = 200
"""The most sagas one page of the list holds."""

PAGE_ATTEMPTS = 100
"""The most attempts one page of a saga's timeline holds."""

_DETAIL_PAGE = 50
"""Events read at a time while following one attempt to its end (it usually ends at the next)."""


def open_store(url: str) -> EventStore:
    """The log at ``url``, opened without creating or changing anything (a store that holds no
    saga log, a new memory store among them, is refused)."""
    return EventStore(url, schema="require")


@dataclass(frozen=True, slots=True)
class ListFilters:
    """The list's filters, as ``saga list`` takes them; ``None`` keeps everything."""

    status: str | None = None
    name: str | None = None
    failed_step: str | None = None
    error_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: str | None = None

    NAMES = ("status", "name", "failed_step", "error_type", "since", "until", "limit", "cursor")
    """The query parameters the list takes."""

    @classmethod
    def parse(cls, query: Query, *, now: datetime) -> ListFilters:
        """Filters from a query string (see :class:`~saga.ui.params.Query`); raises
        :class:`~saga.InvalidInput` naming the value that is wrong."""
        since, until = query.time("since", now=now), query.time("until", now=now)
        if since is not None and until is not None and since > until:
            raise InvalidInput("since is after until: nothing can match")
        limit = query.whole("limit", low=1, high=MAX_PAGE)
        return cls(query.choice("status", [s.value for s in SagaStatus]), query.text("name"),
                   query.text("failed_step"), query.text("error_type"), since, until,
                   50 if limit is None else limit, query.raw("cursor"))

    def query(self, **changes: str | None) -> dict[str, str]:
        """The filters as query-string values (for links to other pages of the list)."""
        values = {
            "status": self.status, "name": self.name, "failed_step": self.failed_step,
            "error_type": self.error_type,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "limit": str(self.limit) if self.limit != 50 else None, "cursor": self.cursor,
        }
        values.update(changes)
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the list: rows (JSON objects) and the cursor of the next page (``None``: last)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None

    @property
    def active(self) -> bool:
        """Whether a saga on this page is still running or compensating (worth refreshing)."""
        return any(SagaStatus(r["status"]).is_active for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        """``{"sagas": [...], "next_cursor": ...}``."""
        return {"sagas": self.rows, "next_cursor": self.next_cursor}


def list_sagas(store: EventLog, filters: ListFilters) -> Page:
    """One page of sagas matching ``filters``, newest started first, as
    :meth:`~saga.store.EventLog.list_sagas` (the query of ``saga list``) selects them.

    Each row has ``id``, ``name``, ``version``, ``status``, ``started_at``,
    ``updated_at`` and ``failed_step`` (the step that failed for good, ``None``
    if none did). Raises :class:`~saga.InvalidInput` for a cursor no page gave.
    """
    found = store.list_sagas(
        status=filters.status, name=filters.name, failed_step=filters.failed_step,
        error_type=filters.error_type, since=filters.since, until=filters.until,
        limit=filters.limit, cursor=filters.cursor)
    rows = [{"id": r.saga_id, "name": r.name, "version": r.version, "status": r.status,
             "started_at": r.started_at.isoformat(), "updated_at": r.updated_at.isoformat(),
             "failed_step": r.failed_step} for r in found.rows]
    return Page(rows, found.cursor)


def saga_page(store: EventLog, saga_id: str, page: int = 1) -> dict[str, Any]:
    """Page ``page`` (from 1) of the saga's timeline, secrets masked: ``saga show --json``'s
    header, the attempts numbered ``(page - 1) * PAGE_ATTEMPTS`` on (each with its ``index`` in the
    whole timeline), the operator actions taken while they ran, and ``page``: ``number``,
    ``pages``, ``size`` and ``attempts`` (how many the saga has).

    The log is read once, a page of events at a time, and only this page's attempts are kept, so
    memory is bounded however long the log. Raises ``SagaNotFound``, and
    :class:`~saga.InvalidInput` for a page past the last.
    """
    first, end = (page - 1) * PAGE_ATTEMPTS, page * PAGE_ATTEMPTS
    reader = Reader(saga_id)
    attempts: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    index = 0

    def keep(found: Iterable[Attempt]) -> None:
        nonlocal index
        for a in found:
            if first <= index < end:
                attempts.append({**a.to_json(), "index": index})
            index += 1

    for stored in redacted(stream(store, saga_id)):
        action = reader.add(stored)
        keep(reader.ended())
        # an action belongs to the page of the attempt that started last before it
        if action is not None and first <= max(reader.started - 1, 0) < end:
            actions.append(action.to_json())
    keep(reader.rest())
    pages = max(1, -(-reader.started // PAGE_ATTEMPTS))
    if page > pages:
        raise InvalidInput(f"saga {shorten(saga_id)!r} has {reader.started:,} attempts on {pages:,} "
                           f"pages: there is no page {page:,}")
    return {**reader.header(), "attempts": attempts, "operator_actions": actions,
            "page": {"number": page, "pages": pages, "size": PAGE_ATTEMPTS, "attempts": reader.started}}


def attempt_detail(store: EventLog, saga_id: str, seq: int) -> dict[str, Any]:
    """The attempt that event ``seq`` of the saga's log starts, with the saga's ``id``, secrets masked;
    read from that event on until the attempt ends, so only that attempt is loaded. Raises
    ``SagaNotFound``, and :class:`~saga.InvalidInput` when event ``seq`` starts no attempt."""
    found = attempt_at(redacted(stream(store, saga_id, after=seq - 1, page=_DETAIL_PAGE)))
    if found is None:
        raise InvalidInput(f"saga {shorten(saga_id)!r} has no attempt that starts at seq {seq:,}")
    return {"id": saga_id, **found.to_json()}


def stats(store: EventLog, *, name: str | None, since: datetime | None) -> dict[str, Any]:
    """The statistics ``saga stats --json`` prints, for one saga name or all, since a time or ever,
    each step with its ``failure_rate`` (failures, timeouts and lost attempts over attempts)."""
    data = store.stats(name=name, since=since).to_json()
    for figures in data["steps"].values():
        bad = figures["failures"] + figures["timeouts"] + figures["lost"]
        figures["failure_rate"] = bad / figures["attempts"] if figures["attempts"] else 0.0
    redacted: dict[str, Any] = redact_json(data)
    return redacted

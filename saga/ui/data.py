"""What the pages show, read from the log: the list of sagas, one saga's timeline, the statistics.

Everything the web pages need from the store goes through this module, read
only, and comes back as plain JSON-ready values with every secret shown as
``**********``. The list and the statistics are the store's own
queries (:mod:`saga.store.queries`), the ones ``saga list`` and ``saga stats``
run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import InvalidInput
from ..history import timeline
from ..secrets import redact_json
from ..state import SagaStatus
from ..store import queries
from ..store.base import EventStore, StoredEvent
from ..store.sql import SqlEventStore
from ..text import shorten
from ..timespec import parse_time

__all__ = ["ListFilters", "Page", "attempt_detail", "list_sagas", "open_store", "saga_timeline", "stats"]

MAX_PAGE = 200
"""The most sagas one page of the list holds."""

_OUTCOMES = {
    ("StepAttemptFailed", False), ("StepSucceeded", False),
    ("CompensationAttemptFailed", True), ("StepCompensated", True),
}


def open_store(url: str) -> SqlEventStore:
    """The log at ``url``, opened without creating or changing anything (a SQL database only)."""
    store = EventStore(url, schema="require")
    if not isinstance(store, SqlEventStore):
        store.close()
        raise InvalidInput("saga ui reads a SQL database (sqlite:// or postgresql://), "
                           "not a log held in another process's memory")
    return store


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

    @classmethod
    def parse(cls, params: dict[str, str], *, now: datetime) -> ListFilters:
        """Filters from a query string's values (empty values count as absent); raises
        :class:`~saga.InvalidInput` naming the value that is wrong."""
        def get(key: str) -> str | None:
            value = params.get(key, "").strip()
            return value or None

        status = get("status")
        if status is not None and status not in {s.value for s in SagaStatus}:
            choices = ", ".join(s.value for s in SagaStatus)
            raise InvalidInput(f"unknown status {shorten(status)!r}; choose from {choices}")
        since_text, until_text = get("since"), get("until")
        since = parse_time(since_text, now=now, option="since") if since_text else None
        until = parse_time(until_text, now=now, option="until") if until_text else None
        if since is not None and until is not None and since > until:
            raise InvalidInput("since is after until: nothing can match")
        limit_text = get("limit")
        limit = 50
        if limit_text is not None:
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
                raise InvalidInput(f"limit must be a whole number from 1 to {MAX_PAGE}, "
                                   f"got {shorten(limit_text)!r}")
            limit = int(limit_text)
        return cls(status, get("name"), get("failed_step"), get("error_type"), since, until, limit,
                   get("cursor"))

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


def list_sagas(store: SqlEventStore, filters: ListFilters) -> Page:
    """One page of sagas matching ``filters``, newest started first, as
    :func:`saga.store.queries.list_sagas` (the query of ``saga list``) selects them.

    Each row has ``id``, ``name``, ``version``, ``status``, ``started_at``,
    ``updated_at`` and ``failed_step`` (the step that failed for good, ``None``
    if none did). Raises :class:`~saga.InvalidInput` for a cursor no page gave.
    """
    found = queries.list_sagas(
        store, status=filters.status, name=filters.name, failed_step=filters.failed_step,
        error_type=filters.error_type, since=filters.since, until=filters.until,
        limit=filters.limit, cursor=filters.cursor)
    rows = [{"id": r.saga_id, "name": r.name, "version": r.version, "status": r.status,
             "started_at": r.started_at.isoformat(), "updated_at": r.updated_at.isoformat(),
             "failed_step": r.failed_step} for r in found.rows]
    return Page(rows, found.cursor)


def _results(history: Sequence[StoredEvent]) -> dict[tuple[str, bool, int], Any]:
    out: dict[tuple[str, bool, int], Any] = {}
    for e in history:
        comp = e.type.startswith("Compensation") or e.type == "StepCompensated"
        if (e.type, comp) in _OUTCOMES and "step" in e.data and "attempt" in e.data:
            out[(str(e.data["step"]), comp, int(e.data["attempt"]))] = e.data.get("result")
    return out


def saga_timeline(store: SqlEventStore, saga_id: str) -> dict[str, Any]:
    """The saga's timeline as ``saga show --json`` gives it, each attempt with its ``result``
    too (``None`` unless it succeeded with one), secrets masked; raises ``SagaNotFound``."""
    history = store.load(saga_id)
    data = timeline(saga_id, history).to_json()
    results = _results(history)
    for a in data["attempts"]:
        a["result"] = results.get((a["step"], a["compensation"], a["attempt"]))
    redacted: dict[str, Any] = redact_json(data)
    return redacted


def attempt_detail(store: SqlEventStore, saga_id: str, index: int) -> dict[str, Any]:
    """Attempt number ``index`` (from 0, in the order attempts started) of the saga's timeline,
    with ``index`` and the saga's ``id``; raises :class:`~saga.InvalidInput` when there is none."""
    data = saga_timeline(store, saga_id)
    attempts: list[dict[str, Any]] = data["attempts"]
    if not 0 <= index < len(attempts):
        raise InvalidInput(f"saga {shorten(saga_id)!r} has no attempt {index}")
    return {"id": data["id"], "index": index, **attempts[index]}


def stats(store: SqlEventStore, *, name: str | None, since: datetime | None) -> dict[str, Any]:
    """The statistics ``saga stats --json`` prints, for one saga name or all, since a time or ever,
    each step with its ``failure_rate`` (failures, timeouts and lost attempts over attempts)."""
    data = queries.saga_stats(store, name=name, since=since).to_json()
    for figures in data["steps"].values():
        bad = figures["failures"] + figures["timeouts"] + figures["lost"]
        figures["failure_rate"] = bad / figures["attempts"] if figures["attempts"] else 0.0
    redacted: dict[str, Any] = redact_json(data)
    return redacted

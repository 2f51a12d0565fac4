"""What the pages show, read from the log: the list of sagas, one saga's timeline, the statistics.

Everything the web pages need from the store goes through this module, read
only, and comes back as plain JSON-ready values with every secret shown as
``**********``. The list's filters (failed step, error type, started
since/until, a cursor for the next page) are SQL over the ``sagas`` and
``saga_events`` tables.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ..errors import InvalidInput
from ..history import timeline
from ..secrets import redact_json
from ..state import SagaStatus
from ..stats import compute_stats
from ..store.base import EventStore, StoredEvent
from ..store.schema import events, sagas
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
        cursor = get("cursor")
        if cursor is not None:
            _decode_cursor(cursor)
        return cls(status, get("name"), get("failed_step"), get("error_type"), since, until, limit, cursor)

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


def _encode_cursor(created_at: float, saga_id: str) -> str:
    raw = json.dumps([created_at, saga_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        created_at, saga_id = json.loads(raw)
        if isinstance(created_at, bool) or not isinstance(created_at, int | float) \
                or not isinstance(saga_id, str):
            raise ValueError
    except (binascii.Error, ValueError, TypeError):
        raise InvalidInput(f"cursor {shorten(text)!r} is not one this list gave") from None
    return float(created_at), saga_id


def _failed_step() -> sa.ScalarSelect[Any]:
    """The step whose failure (with no retry left) turned the saga back, or ``NULL``."""
    return (
        sa.select(events.c.data["step"].as_string())
        .where(events.c.saga_id == sagas.c.saga_id, events.c.type == "StepAttemptFailed",
               events.c.data["retried"].as_boolean() == sa.false())
        .order_by(events.c.seq.desc())
        .limit(1)
        .scalar_subquery()
    )


def _has_error(error_type: str) -> sa.Exists:
    return (
        sa.select(events.c.position)
        .where(events.c.saga_id == sagas.c.saga_id,
               events.c.type.in_(("StepAttemptFailed", "CompensationAttemptFailed")),
               events.c.data["error_type"].as_string() == error_type)
        .exists()
    )


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def list_sagas(store: SqlEventStore, filters: ListFilters) -> Page:
    """One page of sagas matching ``filters``, newest started first.

    Each row has ``id``, ``name``, ``version``, ``status``, ``started_at``,
    ``updated_at`` and ``failed_step`` (the step whose failure turned the saga
    back, ``None`` if none did).
    """
    failed = _failed_step().label("failed_step")
    stmt = sa.select(sagas.c.saga_id, sagas.c.name, sagas.c.version, sagas.c.status,
                     sagas.c.created_at, sagas.c.updated_at, failed)
    if filters.status is not None:
        stmt = stmt.where(sagas.c.status == filters.status)
    if filters.name is not None:
        stmt = stmt.where(sagas.c.name == filters.name)
    if filters.failed_step is not None:
        stmt = stmt.where(_failed_step() == filters.failed_step)
    if filters.error_type is not None:
        stmt = stmt.where(_has_error(filters.error_type))
    if filters.since is not None:
        stmt = stmt.where(sagas.c.created_at >= filters.since.timestamp())
    if filters.until is not None:
        stmt = stmt.where(sagas.c.created_at <= filters.until.timestamp())
    if filters.cursor is not None:
        at, saga_id = _decode_cursor(filters.cursor)
        stmt = stmt.where(sa.or_(sagas.c.created_at < at,
                                 sa.and_(sagas.c.created_at == at, sagas.c.saga_id < saga_id)))
    stmt = stmt.order_by(sagas.c.created_at.desc(), sagas.c.saga_id.desc()).limit(filters.limit + 1)
    with store.engine.connect() as conn:
        found = conn.execute(stmt).all()
    rows = [
        {"id": r.saga_id, "name": r.name, "version": r.version, "status": r.status,
         "started_at": _iso(r.created_at), "updated_at": _iso(r.updated_at), "failed_step": r.failed_step}
        for r in found[: filters.limit]
    ]
    more = len(found) > filters.limit
    last = found[filters.limit - 1] if more else None
    return Page(rows, _encode_cursor(last.created_at, last.saga_id) if last is not None else None)


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
    with store.engine.connect() as conn:
        data = compute_stats(conn, name=name, since=since).to_json()
    for figures in data["steps"].values():
        bad = figures["failures"] + figures["timeouts"] + figures["lost"]
        figures["failure_rate"] = bad / figures["attempts"] if figures["attempts"] else 0.0
    redacted: dict[str, Any] = redact_json(data)
    return redacted

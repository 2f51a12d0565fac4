"""The log as data, read from a store: a filtered list of sagas, statistics, an export of every
event, and the audit of the hash chains.

Functions of an open store, so that the command line, a web page or a
simulator reading a real log ask the same questions the same way. On the SQL
stores each one is a few statements the database answers from its indexes
(``saga_attempts`` and ``sagas.failed_step``, kept by every append), streamed
in constant memory where a log can be large. The memory store answers the
list, the export and the audit from its events; statistics need a SQL database.
None of them writes.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from saga.errors import InvalidInput, SagaNotFound, StoreError
from saga.inspection import audit
from saga.inspection.stats import Stats, compute_stats
from saga.state import SagaStatus
from saga.store.base import EventLog, SagaSummary, StoredEvent
from saga.store.schema import attempts, events, sagas
from saga.store.sql import SqlEventStore
from saga.store.statements import from_ts

__all__ = [
    "ExportRow", "SagaPage", "SagaRow", "audit_head", "audit_verify", "export_events",
    "list_sagas", "saga_stats",
]

MAX_LIMIT = 10_000
"""The most sagas one page of :func:`list_sagas` holds."""


@dataclass(frozen=True, slots=True)
class SagaRow:
    """A saga as ``saga list`` shows it."""

    saga_id: str
    name: str
    version: int
    status: str
    started_at: datetime
    updated_at: datetime
    failed_step: str | None
    parked: str | None = None
    """Why no worker can drive the saga now: its log ends with a ``SagaParked``."""

    def to_json(self) -> dict[str, Any]:
        """``{"id", "name", "status", "started_at", "updated_at", "failed_step", "parked"}``
        (times ISO 8601)."""
        return {"id": self.saga_id, "name": self.name, "status": self.status,
                "started_at": self.started_at.isoformat(), "updated_at": self.updated_at.isoformat(),
                "failed_step": self.failed_step, "parked": self.parked}


@dataclass(frozen=True, slots=True)
class SagaPage:
    """One page of :func:`list_sagas`; ``cursor`` fetches the next (``None``: this is the last)."""

    rows: list[SagaRow]
    cursor: str | None


def _encode_cursor(started: float, saga_id: str) -> str:
    raw = json.dumps([started, saga_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        started, saga_id = json.loads(raw)
        if isinstance(started, bool) or not isinstance(started, int | float) \
                or not isinstance(saga_id, str) or not saga_id.isprintable():
            raise ValueError
        return float(started), saga_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise InvalidInput(f"--cursor {shown!r} is not a cursor from a previous page") from None


def _check_filters(status: str | None, limit: int) -> None:
    if status is not None and status not in {s.value for s in SagaStatus}:
        choices = ", ".join(s.value for s in SagaStatus)
        raise InvalidInput(f"unknown status {status!r}; choose from {choices}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {limit!r}")


def list_sagas(
    store: EventLog,
    *,
    status: str | None = None,
    name: str | None = None,
    failed_step: str | None = None,
    error_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> SagaPage:
    """Sagas newest first (by start, then id, descending), filtered by every filter given.

    ``failed_step``: a step of the saga failed for good (``StepFailed``);
    ``error_type``: some attempt of the saga failed with that error type;
    ``since``/``until``: started at or after ``since`` and before ``until``.
    ``cursor`` is the previous page's :attr:`SagaPage.cursor`: the page goes on
    after its last saga, whatever was started since. Raises
    :class:`~saga.InvalidInput` for an unknown status, a bad limit or cursor.
    """
    _check_filters(status, limit)
    after = None if cursor is None else _decode_cursor(cursor)
    if not isinstance(store, SqlEventStore):
        return _list_loaded(store, status, name, failed_step, error_type, since, until, limit,
                            after)
    parked = events.alias("parked")  # the saga's last event, when it says the saga is parked
    stmt = sa.select(sagas.c.saga_id, sagas.c.name, sagas.c.version, sagas.c.status,
                     sagas.c.created_at,
                     sagas.c.updated_at, sagas.c.failed_step, parked.c.data.label("parked"),
                     ).outerjoin(parked, sa.and_(parked.c.saga_id == sagas.c.saga_id,
                                                 parked.c.seq == sagas.c.last_seq,
                                                 parked.c.type == "SagaParked"))
    if status is not None:
        stmt = stmt.where(sagas.c.status == status)
    if name is not None:
        stmt = stmt.where(sagas.c.name == name)
    if failed_step is not None:
        stmt = stmt.where(sagas.c.failed_step == failed_step)
    if error_type is not None:
        stmt = stmt.where(sa.exists().where(attempts.c.saga_id == sagas.c.saga_id,
                                            attempts.c.error_type == error_type))
    if since is not None:
        stmt = stmt.where(sagas.c.created_at >= since.timestamp())
    if until is not None:
        stmt = stmt.where(sagas.c.created_at < until.timestamp())
    if after is not None:
        stmt = stmt.where(sa.tuple_(sagas.c.created_at, sagas.c.saga_id) < sa.tuple_(*after))
    stmt = stmt.order_by(sagas.c.created_at.desc(), sagas.c.saga_id.desc()).limit(limit + 1)
    with store.engine.connect() as conn:
        found = conn.execute(stmt).all()
    rows = [SagaRow(r.saga_id, r.name, r.version, r.status, from_ts(r.created_at), from_ts(r.updated_at),
                    r.failed_step, _parked(r.parked)) for r in found[:limit]]
    more = len(found) > limit
    return SagaPage(rows, _encode_cursor(found[limit - 1].created_at, rows[-1].saga_id)
                    if more else None)


def _parked(data: Any) -> str | None:
    """The reason in a ``SagaParked`` event's data (``None``: not parked)."""
    reason = data.get("reason") if isinstance(data, dict) else None
    return reason if isinstance(reason, str) else None


def _all_summaries(store: EventLog) -> list[SagaSummary]:
    return store.find(limit=2**62)


def _list_loaded(  # noqa: PLR0917 - the filters of list_sagas
    store: EventLog, status: str | None, name: str | None, failed_step: str | None,
    error_type: str | None, since: datetime | None, until: datetime | None, limit: int,
    after: tuple[float, str] | None,
) -> SagaPage:
    """:func:`list_sagas` for a store without SQL, from each saga's events."""
    found: list[tuple[tuple[float, str], SagaRow]] = []
    for s in _all_summaries(store):
        key = (s.created_at.timestamp(), s.saga_id)
        if (status is not None and s.status.value != status) or (name is not None and s.name != name) \
                or (since is not None and s.created_at < since) \
                or (until is not None and s.created_at >= until) or (after is not None and key >= after):
            continue
        loaded = store.load(s.saga_id)
        failed = [e.data["step"] for e in loaded if e.type == "StepFailed"]
        if failed_step is not None and (not failed or failed[-1] != failed_step):
            continue
        if error_type is not None and not any(
            e.type in ("StepAttemptFailed", "CompensationAttemptFailed")
            and e.data.get("error_type") == error_type for e in loaded
        ):
            continue
        last = loaded[-1] if loaded else None
        found.append((key, SagaRow(s.saga_id, s.name, s.version, s.status.value, s.created_at, s.updated_at,
                                   failed[-1] if failed else None,
                                   _parked(last.data if last and last.type == "SagaParked" else None))))
    found.sort(key=lambda kr: kr[0], reverse=True)
    page = found[:limit]
    more = len(found) > limit
    return SagaPage([r for _, r in page], _encode_cursor(*page[-1][0]) if more else None)


@contextmanager
def _snapshot(store: SqlEventStore) -> Iterator[sa.Connection]:
    """A read-only transaction that sees one snapshot of the log throughout."""
    with store.engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            if postgres:
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            else:
                conn.exec_driver_sql("BEGIN")  # the driver leaves transactions to us
            try:
                yield conn
            finally:
                if not postgres:
                    conn.exec_driver_sql("ROLLBACK")


def saga_stats(store: EventLog, *, name: str | None = None, since: datetime | None = None,
               top: int = 10) -> Stats:
    """:func:`saga.inspection.stats.compute_stats` over the store's log, read from ``saga_attempts`` in
    one snapshot. Raises :class:`~saga.InvalidInput` on a store without SQL."""
    if not isinstance(store, SqlEventStore):
        raise InvalidInput("statistics are computed in SQL: they need a SQLite or PostgreSQL "
                           f"database, not {store!r}")
    with _snapshot(store) as conn:
        return compute_stats(conn, name=name, since=since, top=top, attempts=attempts)


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One event as ``saga export`` writes it."""

    saga_id: str
    seq: int
    type: str
    recorded_at: datetime
    data: Any
    hash: str | None

    def to_json(self) -> dict[str, Any]:
        """``{"saga_id", "seq", "type", "recorded_at", "data", "hash"}`` (``recorded_at`` ISO 8601)."""
        return {"saga_id": self.saga_id, "seq": self.seq, "type": self.type,
                "recorded_at": self.recorded_at.isoformat(), "data": self.data, "hash": self.hash}


def export_events(store: EventLog, *, since: datetime | None = None,
                  batch: int = 1000) -> Iterator[ExportRow]:
    """Every event recorded at or after ``since``, in the order they were appended, read in
    batches of ``batch`` from one snapshot (memory stays flat whatever the size of the log).

    The database stays open until the iterator is exhausted or closed.
    """
    if not isinstance(store, SqlEventStore):
        for s in sorted(_all_summaries(store), key=lambda s: s.saga_id):
            for e in store.load(s.saga_id):
                if since is None or e.recorded_at >= since:
                    yield _exported(e)
        return
    stmt = sa.select(events.c.saga_id, events.c.seq, events.c.type, events.c.recorded_at,
                     events.c.data, events.c.hash).order_by(events.c.position)
    if since is not None:
        stmt = stmt.where(events.c.recorded_at >= since.timestamp())
    with _snapshot(store) as conn:
        for r in conn.execute(stmt.execution_options(yield_per=batch)):
            yield ExportRow(r.saga_id, r.seq, r.type, from_ts(r.recorded_at), r.data, r.hash)


def _exported(e: StoredEvent) -> ExportRow:
    return ExportRow(e.saga_id, e.seq, e.type, e.recorded_at, e.data, e.hash)


def _by_saga_id(conn: sa.Connection, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``column`` ordered in code point order, as :mod:`saga.inspection.audit` needs."""
    return column.collate("C") if conn.dialect.name == "postgresql" else column


def _parse_head(head: str | audit.Head | None, saga_id: str | None) -> audit.Head | None:
    if head is not None and saga_id is not None:
        raise InvalidInput("--head covers the whole log: verify without a saga id to check it")
    if head is None or isinstance(head, audit.Head):
        return head
    try:
        return audit.Head.parse(head)
    except ValueError as e:
        raise InvalidInput(f"--head {head[:80]!r}: {e}") from None


def _audit_row(e: StoredEvent) -> audit.AuditRow:
    # the memory store writes the current hash version only
    return audit.AuditRow(e.saga_id, e.seq, e.type, e.schema_version, e.data, e.hash,
                          e.recorded_at.timestamp(), audit.HASH_VERSION, e.position or 0)


def audit_verify(store: EventLog, saga_id: str | None = None, *,
                 head: str | audit.Head | None = None) -> audit.AuditReport:
    """Recompute every hash chain (or ``saga_id``'s alone) and check each saga's index row, and,
    with ``head`` (from :func:`audit_head`, kept elsewhere), that no saga lost events the head
    covered, or was deleted whole, since. Streams the log in one snapshot.

    Raises :class:`~saga.InvalidInput` for a head that is not one, and
    :class:`~saga.SagaNotFound` if ``saga_id`` has neither events nor an index row.
    """
    wanted = _parse_head(head, saga_id)
    if not isinstance(store, SqlEventStore):
        summaries = sorted(_all_summaries(store), key=lambda s: s.saga_id)
        if saga_id is not None:
            summaries = [s for s in summaries if s.saga_id == saga_id]
        report = audit.verify((_audit_row(e) for s in summaries for e in store.load(s.saga_id)),
                              sagas=summaries, head=wanted)
    else:
        with _snapshot(store) as conn:
            rows = sa.select(events.c.position, events.c.saga_id, events.c.seq, events.c.type,
                             events.c.schema_version, events.c.data, events.c.recorded_at,
                             events.c.hash_version, events.c.hash)
            index = sa.select(sagas.c.saga_id, sagas.c.last_seq)
            if saga_id is not None:
                rows = rows.where(events.c.saga_id == saga_id)
                index = index.where(sagas.c.saga_id == saga_id)
            rows = rows.order_by(_by_saga_id(conn, events.c.saga_id), events.c.seq)
            index = index.order_by(_by_saga_id(conn, sagas.c.saga_id))
            # the index rows are few beside the events: read them whole, stream the events
            index_rows = conn.execute(index).all()
            report = audit.verify(conn.execute(rows.execution_options(yield_per=1000)),
                                  sagas=index_rows, head=wanted)
    if saga_id is not None and report.ok and report.sagas == 0:
        raise SagaNotFound(f"no saga has id {saga_id!r}")
    return report


HEAD_WAIT = 30.0
"""Seconds :func:`audit_head` waits, on PostgreSQL, for transactions writing events to end."""


def audit_head(store: EventLog, *, wait: float = HEAD_WAIT) -> audit.Head:
    """A :class:`~saga.inspection.audit.Head` of the log as it is: a digest over every saga's last event,
    and the position it covers. Keep ``str(head)`` elsewhere and pass it to
    :func:`audit_verify` later: it still holds once the log has grown.

    On PostgreSQL an append can commit after one that drew a later position:
    the head waits (up to ``wait`` seconds, then raises
    :class:`~saga.StoreError`) until the appends in flight when it looked have
    ended, so that it covers every event up to its position.
    """
    if not isinstance(store, SqlEventStore):
        built = audit.HeadBuilder()
        top = 0
        for s in sorted(_all_summaries(store), key=lambda s: s.saga_id):
            last = store.load(s.saga_id, after=s.last_seq - 1)
            if last:
                built.add(s.saga_id, last[-1].seq, last[-1].hash)
                top = max(top, last[-1].position or 0)
        return built.head(top)
    # SQLite has one writer at a time: a snapshot holds every event up to its last position
    position = _settled_position(store, wait) if store.engine.dialect.name == "postgresql" else None
    with _snapshot(store) as conn:
        if position is None:
            position = conn.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0
        within = events.c.position <= position
        lasts = (sa.select(events.c.saga_id, sa.func.max(events.c.seq).label("seq"))
                 .where(within).group_by(events.c.saga_id).subquery())
        stmt = (sa.select(events.c.saga_id, events.c.seq, events.c.hash)
                .join(lasts, sa.and_(lasts.c.saga_id == events.c.saga_id,
                                     lasts.c.seq == events.c.seq))
                .order_by(_by_saga_id(conn, events.c.saga_id)))
        built = audit.HeadBuilder()
        for r in conn.execute(stmt.execution_options(yield_per=1000)):
            built.add(r.saga_id, r.seq, r.hash)
        return built.head(position)


_WRITING_EVENTS = sa.text(
    "SELECT DISTINCT l.virtualtransaction FROM pg_locks l "
    "WHERE l.relation = CAST('saga_events' AS regclass) AND l.mode = 'RowExclusiveLock' "
    "AND l.pid <> pg_backend_pid()"
)


def _settled_position(store: SqlEventStore, wait: float) -> int:
    """The last position of PostgreSQL's log once every transaction that was writing events
    when it was read has ended: no event at or before it can appear later.

    Positions come from a sequence, drawn as rows are inserted, so a later
    one never goes to an event written after this looked. An earlier one is
    either visible already or held by a transaction writing events now.
    """
    with store.engine.connect() as conn:
        position = conn.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0
        writing = set(conn.execute(_WRITING_EVENTS).scalars())
        conn.rollback()
        deadline = time.monotonic() + wait
        while writing:
            if time.monotonic() >= deadline:
                raise StoreError(f"a transaction writing events is still open after {wait:g} s: "
                                 "a head cannot be taken until it ends")
            time.sleep(0.01)
            writing &= set(conn.execute(_WRITING_EVENTS).scalars())
            conn.rollback()
    return position

"""The read side of the SQL stores: the list of sagas, statistics, export and audit, each a
few statements the database answers from its indexes (``saga_attempts``, brought up to date
with the log first (:mod:`saga.store.projection`), and ``sagas.failed_step``, kept by every
append), streamed in constant memory where a log can be large. None of them writes to the log.

The statements are the same on every database; a backend supplies its read-only snapshot,
the order of saga ids the audit needs, and (on PostgreSQL) the position a head can cover.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from saga.errors import StoreError
from saga.state import SagaStatus
from saga.store import audit
from saga.store.base import EventLog
from saga.store.reads import (
    HEAD_WAIT,
    AuditReport,
    ExportRow,
    Head,
    SagaPage,
    SagaRow,
    Stats,
    check_listing,
    encode_cursor,
    parked_reason,
    reported,
    wanted_head,
)
from saga.store.schema import events, sagas
from saga.store.sqlstats import compute_stats, saga_counts_query
from saga.store.statements import from_ts
from saga.store.transient import first_line, translated

__all__ = ["SqlReads"]


class SqlReads(EventLog):
    """The read side of :class:`~saga.store.sql.SqlEventStore` (a mixin)."""

    engine: sa.Engine

    def _read(self) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError  # pragma: no cover - the store provides it

    # -- backend hooks ----------------------------------------------------------------------

    @contextmanager
    def _snapshot(self) -> Iterator[sa.Connection]:
        """A read-only transaction that sees one snapshot of the log throughout."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def _by_saga_id(self, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
        """``column`` ordered in code point order, as :mod:`saga.store.audit` needs."""
        return column

    def _head_position(self, wait: float) -> int | None:
        """The last position a head taken now can cover, if the snapshot's last one may not
        hold every event before it (``None``: the snapshot's last position does)."""
        return None

    def _attempts_source(self) -> sa.FromClause:
        raise NotImplementedError  # pragma: no cover - the projector provides it

    # -- the read side ----------------------------------------------------------------------

    @translated
    def list_sagas(
        self,
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
        after = check_listing(status, limit, cursor)
        attempts = self._attempts_source() if error_type is not None else None
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
        if attempts is not None:
            stmt = stmt.where(sa.exists().where(attempts.c.saga_id == sagas.c.saga_id,
                                                attempts.c.error_type == error_type))
        if since is not None:
            stmt = stmt.where(sagas.c.created_at >= since.timestamp())
        if until is not None:
            stmt = stmt.where(sagas.c.created_at < until.timestamp())
        if after is not None:
            stmt = stmt.where(sa.tuple_(sagas.c.created_at, sagas.c.saga_id) < sa.tuple_(*after))
        stmt = stmt.order_by(sagas.c.created_at.desc(), sagas.c.saga_id.desc()).limit(limit + 1)
        with self._read() as conn:
            found = conn.execute(stmt).all()
        rows = [SagaRow(r.saga_id, r.name, r.version, r.status, from_ts(r.created_at),
                        from_ts(r.updated_at), r.failed_step, parked_reason(r.parked))
                for r in found[:limit]]
        more = len(found) > limit
        return SagaPage(rows, encode_cursor(found[limit - 1].created_at, rows[-1].saga_id)
                        if more else None)

    @translated
    def stats(self, *, name: str | None = None, since: datetime | None = None,
              top: int = 10) -> Stats:
        attempts = self._attempts_source()
        with self._snapshot() as conn:
            return compute_stats(conn, name=name, since=since, top=top, attempts=attempts)

    def status_counts(self) -> dict[tuple[str, SagaStatus], int]:
        # One aggregate over the index. A gauge asks again soon: a fault is not retried.
        try:
            with self._read() as conn:
                rows = conn.execute(saga_counts_query()).all()
        except sa_exc.SQLAlchemyError as e:
            raise StoreError(f"database error: {first_line(e)}") from e
        return {(str(name), SagaStatus(status)): int(n) for name, status, n in rows}

    def export(self, *, since: datetime | None = None, batch: int = 1000) -> Iterator[ExportRow]:
        stmt = sa.select(events.c.saga_id, events.c.seq, events.c.type, events.c.recorded_at,
                         events.c.data, events.c.hash).order_by(events.c.position)
        if since is not None:
            stmt = stmt.where(events.c.recorded_at >= since.timestamp())
        try:
            with self._snapshot() as conn:
                for r in conn.execute(stmt.execution_options(yield_per=batch)):
                    yield ExportRow(r.saga_id, r.seq, r.type, from_ts(r.recorded_at), r.data, r.hash)
        except sa_exc.SQLAlchemyError as e:
            raise StoreError(f"database error: {first_line(e)}") from e

    @translated
    def verify(self, saga_id: str | None = None, *, head: str | Head | None = None) -> AuditReport:
        wanted = wanted_head(head, saga_id)
        with self._snapshot() as conn:
            rows = sa.select(events.c.position, events.c.saga_id, events.c.seq, events.c.type,
                             events.c.schema_version,
                             sa.cast(events.c.data, sa.Text).label("data"),  # the text hashed
                             events.c.recorded_at,
                             events.c.hash_version, events.c.hash)
            index = sa.select(sagas.c.saga_id, sagas.c.last_seq)
            if saga_id is not None:
                rows = rows.where(events.c.saga_id == saga_id)
                index = index.where(sagas.c.saga_id == saga_id)
            rows = rows.order_by(self._by_saga_id(events.c.saga_id), events.c.seq)
            index = index.order_by(self._by_saga_id(sagas.c.saga_id))
            # the index rows are few beside the events: read them whole, stream the events
            index_rows = conn.execute(index).all()
            report = audit.verify(conn.execute(rows.execution_options(yield_per=1000)),
                                  sagas=index_rows, head=wanted)
        return reported(report, saga_id)

    @translated
    def head(self, *, wait: float = HEAD_WAIT) -> Head:
        position = self._head_position(wait)
        with self._snapshot() as conn:
            if position is None:
                position = conn.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0
            within = events.c.position <= position
            lasts = (sa.select(events.c.saga_id, sa.func.max(events.c.seq).label("seq"))
                     .where(within).group_by(events.c.saga_id).subquery())
            stmt = (sa.select(events.c.saga_id, events.c.seq, events.c.hash)
                    .join(lasts, sa.and_(lasts.c.saga_id == events.c.saga_id,
                                         lasts.c.seq == events.c.seq))
                    .order_by(self._by_saga_id(events.c.saga_id)))
            built = audit.HeadBuilder()
            for r in conn.execute(stmt.execution_options(yield_per=1000)):
                built.add(r.saga_id, r.seq, r.hash)
            return built.head(position)

"""``saga_attempts`` as a projection of the log, kept off the hot path.

The log is the truth; the attempts table is derived from it by the one attempt
projection (:func:`saga.attempts.project`, through
:func:`~saga.store.chain.attempt_rows`). An append writes its events and its
saga's row and nothing more. A projector follows the log instead: it reads the
events that start or end an attempt past the projection's watermark (the row
``attempts`` of ``saga_projections``), in the order of their position, a batch
at a time, writes the attempts they start and end, and moves the watermark on,
all in one transaction. A projector killed half way leaves the table and the
watermark as they were before its batch; the next one starts there.

Who runs it: the read side, before every query that reads the table (the
statistics and the search by error type), so that they answer from the whole
log; and idle workers, one batch at a time, so that little is left for the
readers. A store that cannot write (a read-only database) reads the attempts
from the events alone instead (:func:`~saga.store.sqlstats.attempts_from_events`),
with the same figures.

Positions come from the database in the order rows are inserted. On SQLite a
writer holds the database's write lock, so every position up to the last one is
committed when the projector (a writer too) looks. On PostgreSQL an append can
commit after one that drew a later position: the projector reads only up to the
position that every transaction writing events when it started has finished
(the same bound a head of the log uses), and never past it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from saga import events as ev
from saga.attempts import ENDS, STARTS
from saga.errors import InvalidInput, StoreError
from saga.store import statements as q
from saga.store.chain import attempt_rows
from saga.store.reads import HEAD_WAIT
from saga.store.schema import attempts, events, projections
from saga.store.sqlreads import SqlReads
from saga.store.sqlstats import attempts_from_events
from saga.store.transient import translated

__all__ = ["ATTEMPTS", "BATCH", "Projector"]

log = logging.getLogger("saga.store")

ATTEMPTS = "attempts"
"""The name of the attempts projection's row in ``saga_projections``."""

BATCH = 5000
"""The most events one transaction of the projector applies."""

_TYPES = sorted(t.__name__ for t in (*STARTS, *ENDS))

_MARK = sa.select(projections.c.position).where(projections.c.name == ATTEMPTS)
_BEHIND = sa.select(
    _MARK.scalar_subquery(),
    sa.select(sa.func.max(events.c.position)).scalar_subquery(),
)
_MOVE = (projections.update().where(projections.c.name == ATTEMPTS)
         .values(position=sa.bindparam("b_position")))


class Projector(SqlReads):
    """The read side of a SQL store with its attempts projector (a mixin of
    :class:`~saga.store.sql.SqlEventStore`)."""

    def _write(self) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError  # pragma: no cover - the store provides it

    @translated
    def catch_up(self, *, batches: int | None = None, batch: int = BATCH) -> int:
        """As :meth:`EventLog.catch_up`, ``batch`` events at most per transaction."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidInput(f"batch must be a positive whole number, got {batch!r}")
        with self._read() as conn:
            mark, last = conn.execute(_BEHIND).one()
        if mark is None or last is None or mark >= last:
            return 0
        head = self._head_position(HEAD_WAIT)
        done = 0
        while batches is None or batches > 0:
            n, more = self._project_batch(head, batch)
            done += n
            if not more:
                break
            if batches is not None:
                batches -= 1
        return done

    def _project_batch(self, head: int | None, size: int) -> tuple[int, bool]:
        """Apply the next batch of events past the watermark (up to ``head``, if given); returns
        how many events it applied and whether more may follow."""
        with self._write() as conn:
            mark = conn.execute(_MARK.with_for_update()).scalar_one()
            if head is None:  # SQLite: every position up to the last is committed
                head = conn.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0
            if mark >= head:
                return 0, False
            rows = conn.execute(
                sa.select(events.c.position, events.c.saga_id, events.c.seq, events.c.type,
                          events.c.schema_version, events.c.data)
                .where(events.c.position > mark, events.c.position <= head,
                       events.c.type.in_(_TYPES))
                .order_by(events.c.position)
                .limit(size)
            ).all()
            full = len(rows) == size
            starts, ends = _attempts_of(rows)
            if starts:
                conn.execute(sa.text(q.ATTEMPT_START), starts)
            if ends:
                conn.execute(sa.text(q.ATTEMPT_END), ends)
            conn.execute(_MOVE, {"b_position": rows[-1].position if full else head})
        return len(rows), full

    def _attempts_source(self) -> sa.FromClause:
        """Where the read side reads attempts: the table, caught up with the log, or, when this
        store cannot write it, the attempts derived from the events alone."""
        try:
            self.catch_up()
        except StoreError as e:
            if not _read_only(e):
                raise
            log.info("the attempts table cannot be brought up to date here (%s): reading the "
                     "attempts from the events", e)
            return attempts_from_events()
        return attempts


def _attempts_of(rows: Sequence[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The attempts a batch of event rows starts and ends, by saga (each saga's events are in
    order of ``seq``: a saga's appends follow one another, and positions with them)."""
    starts: list[dict[str, Any]] = []
    ends: list[dict[str, Any]] = []
    by_saga = sorted(rows, key=lambda r: (r.saga_id, r.seq))
    for saga_id, found in groupby(by_saga, key=lambda r: r.saga_id):
        s, e = attempt_rows(saga_id, list(_parsed(saga_id, found)))
        starts += s
        ends += e
    return starts, ends


def _parsed(saga_id: str, rows: Iterator[Any]) -> Iterator[ev.Event]:
    for r in rows:
        try:
            yield ev.parse(r.type, r.data, r.schema_version)
        except ValueError as e:
            raise StoreError(f"saga {saga_id}: event {r.seq} cannot be read: {e}") from e


_READ_ONLY_SQLSTATE = "25006"
"""PostgreSQL's ``read_only_sql_transaction``: a write in a read-only transaction or database."""


def _read_only(error: StoreError) -> bool:
    """Whether ``error`` is a database refusing a write because it is read-only, by the driver's
    own code for it (PostgreSQL's SQLSTATE, SQLite's error name)."""
    cause = error.__cause__
    while cause is not None and not isinstance(cause, sa_exc.DBAPIError):
        cause = cause.__cause__
    orig = getattr(cause, "orig", None)
    sqlite_error = getattr(orig, "sqlite_errorname", None)
    return (getattr(orig, "sqlstate", None) == _READ_ONLY_SQLSTATE
            or (isinstance(sqlite_error, str) and sqlite_error.startswith("SQLITE_READONLY")))

"""The SQL both databases share, in SQLAlchemy Core: the predicates, written once, and the
statements of the hot path, built once.

Each predicate is a function of the values it compares against (bound
parameters, or another table's columns), so that every query needing it, a
database's own textual statements included, is built from the same expression.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from saga import events as ev
from saga.errors import StoreError
from saga.state import SagaStatus
from saga.store.base import SagaSummary, StoredEvent
from saga.store.schema import events, sagas

__all__ = [
    "APPEND", "APPEND_FENCED", "APPEND_VARIANTS", "ATTEMPT_END", "ATTEMPT_START", "CREATE",
    "LOAD", "PREVIOUS_HASH",
    "SUMMARY", "Epoch", "due_query", "epoch", "from_ts",
    "is_due", "lease_free", "lease_open", "next_wake", "stored_event", "summary_of", "to_ts",
]

ACTIVE = (SagaStatus.RUNNING.value, SagaStatus.COMPENSATING.value)

_B = sa.bindparam


def to_ts(dt: datetime) -> float:
    """A timezone-aware datetime as epoch seconds (how the tables store time)."""
    return dt.timestamp()


def from_ts(ts: float) -> datetime:
    """Epoch seconds as a UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


class Epoch(sa.sql.expression.FunctionElement[float]):
    """Seconds since the epoch of an ISO 8601 text: each backend compiles it its own way
    (:mod:`saga.store.sqlite`, :mod:`saga.store.postgres.statements`)."""

    type = sa.Float(precision=53)
    inherit_cache = True
    name = "saga_epoch"


def epoch(text: sa.ColumnElement[str]) -> Epoch:
    """:class:`Epoch` of ``text`` (such as an event's ``at``)."""
    return Epoch(text)


def lease_free(now: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """No one holds the saga's lease at ``now`` (never leased, released, or expired)."""
    return sa.or_(sagas.c.lease_owner.is_(None), sagas.c.lease_expires_at < now)


def lease_open(owner: sa.ColumnElement[Any], now: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """``owner`` may write under the saga's lease at ``now``: it is free, or ``owner``'s."""
    return sa.or_(lease_free(now), sagas.c.lease_owner == owner)


def is_due(now: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """The saga is active, its wake-up time has come by ``now``, and no one holds it."""
    # The statuses are literals: the expression then also serves textual statements.
    return sa.and_(
        sagas.c.wake_at <= now,
        sagas.c.status.in_([sa.literal_column(f"'{s}'") for s in ACTIVE]),
        lease_free(now),
    )


def lease_free_at() -> sa.ColumnElement[Any]:
    """When the saga needs attention: its wake-up time, or its lease's expiry if that is later."""
    return sa.case(
        (sagas.c.lease_expires_at > sagas.c.wake_at, sagas.c.lease_expires_at),
        else_=sagas.c.wake_at,
    )


# The hot path's statements are built once, with bound parameters: building a Core
# statement and its cache key per call costs more than SQLite's commit.
CREATE = sagas.insert()


def _append(*, status: bool, wake: bool = True) -> sa.Update:
    values: dict[str, Any] = {
        "last_seq": _B("b_last_seq"), "updated_at": _B("b_now"),
        "failed_step": sa.func.coalesce(_B("b_failed_step"), sagas.c.failed_step),
    }
    if status:
        values["status"] = _B("b_status")
    if wake:
        values["wake_at"] = _B("b_wake_at")
    stmt = (sagas.update()
            .where(sagas.c.saga_id == _B("b_saga_id"), sagas.c.last_seq == _B("b_expected"))
            .values(**values))
    if not status:
        stmt = stmt.where(sagas.c.status == _B("b_status"))
    if not wake:
        stmt = stmt.where(sagas.c.wake_at <= _B("b_wake_at"))
    return stmt


def _fenced(append: sa.Update) -> sa.Update:
    return (append.where(lease_open(_B("b_owner"), _B("b_now")))
            .values(lease_owner=_B("b_lease_owner"), lease_expires_at=_B("b_lease_until")))


APPEND_VARIANTS = {
    (fenced, status, wake): _fenced(_append(status=status, wake=wake)) if fenced
    else _append(status=status, wake=wake)
    for fenced in (False, True) for status in (False, True) for wake in (False, True)
}
"""``APPEND`` and ``APPEND_FENCED`` (keyed ``(fenced, sets status, sets wake_at)``), and their
forms for an append that leaves the status, the wake-up time (:func:`~saga.store.base.wake_kept`)
or both as they are: such a form matches no row if they are not as expected. SQLite rewrites
the entries of every index on a column an ``UPDATE`` sets, changed or not."""
APPEND = APPEND_VARIANTS[(False, True, True)]
"""An operator's append: checks ``seq`` only, leaves the lease alone."""
APPEND_FENCED = APPEND_VARIANTS[(True, True, True)]
"""A lease holder's append: ``seq`` and lease checked in the one ``UPDATE`` (the fence)."""


def next_wake(new: sa.ColumnElement[Any], now: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The ``wake_at`` an append that asks for ``new`` at ``now`` leaves: the one there if both
    have come by ``now``, else ``new`` (:func:`~saga.store.base.wake_kept`, in SQL)."""
    return sa.case(
        (sa.and_(sagas.c.wake_at <= new, new <= now), sagas.c.wake_at),
        else_=new,
    )
LOAD = (
    sa.select(
        events.c.position, events.c.seq, events.c.type, events.c.schema_version,
        events.c.data, events.c.recorded_at, events.c.writer, events.c.hash,
    )
    .where(events.c.saga_id == _B("b_saga_id"), events.c.seq > _B("b_after"))
    .order_by(events.c.seq)
)
LOAD_PAGE = LOAD.limit(_B("b_limit"))
EXISTS = sa.select(sagas.c.last_seq).where(sagas.c.saga_id == _B("b_saga_id"))
SUMMARY = sa.select(sagas).where(sagas.c.saga_id == _B("b_saga_id"))
REFUSED = sa.select(sagas.c.last_seq, sagas.c.lease_owner, sagas.c.lease_expires_at).where(
    sagas.c.saga_id == _B("b_saga_id")
)


_ATTEMPT_KEY = "saga_id, compensation, step, attempt"
ATTEMPT_START = f"""
INSERT INTO saga_attempts ({_ATTEMPT_KEY}, name, started_at, ended_at, duration, outcome, error_type)
SELECT saga_id, :compensation, :step, :attempt, name, CAST(:started_at AS DOUBLE PRECISION),
       CAST(:ended_at AS DOUBLE PRECISION), CAST(:duration AS DOUBLE PRECISION), :outcome,
       CAST(:error_type AS VARCHAR(200))
FROM sagas WHERE saga_id = :saga_id
ON CONFLICT ({_ATTEMPT_KEY}) DO UPDATE SET
    name = excluded.name, started_at = excluded.started_at, ended_at = excluded.ended_at,
    duration = excluded.duration, outcome = excluded.outcome, error_type = excluded.error_type
"""
"""An attempt the projector writes (a row of :func:`saga.store.chain.attempt_rows`), with its
saga's name; SQL both databases take, with named parameters (a ``NULL`` is typed by its
``CAST``)."""
ATTEMPT_END = """
UPDATE saga_attempts SET ended_at = CAST(:ended_at AS DOUBLE PRECISION),
    duration = CASE WHEN :lost THEN NULL ELSE CAST(:ended_at AS DOUBLE PRECISION) - started_at END,
    outcome = :outcome, error_type = CAST(:error_type AS VARCHAR(200))
WHERE saga_id = :saga_id AND compensation = :compensation AND step = :step AND attempt = :attempt
"""
"""An attempt the projector ends that it started in an earlier batch."""
PREVIOUS_HASH = sa.select(events.c.hash).where(
    events.c.saga_id == _B("b_saga_id"), events.c.seq == _B("b_seq")
)
"""The hash of one event, to chain the next append from."""


def due_query(now: float, names: list[str] | None, limit: int, exclude: list[str] | None = None
              ) -> sa.Select[tuple[str]]:
    """Ids of sagas due at ``now``, most overdue first (as :func:`is_due` says)."""
    stmt = sa.select(sagas.c.saga_id).where(is_due(sa.literal(now))).order_by(sagas.c.wake_at)
    if names is not None:
        stmt = stmt.where(sagas.c.name.in_(names))
    if exclude:
        stmt = stmt.where(sagas.c.saga_id.not_in(exclude))
    return stmt.limit(limit)


def summary_of(r: sa.Row[Any]) -> SagaSummary:
    """A ``sagas`` row as a :class:`SagaSummary`."""
    return SagaSummary(
        saga_id=r.saga_id,
        name=r.name,
        version=r.version,
        status=SagaStatus(r.status),
        last_seq=r.last_seq,
        created_at=from_ts(r.created_at),
        updated_at=from_ts(r.updated_at),
        wake_at=None if r.wake_at is None else from_ts(r.wake_at),
        lease_owner=r.lease_owner,
        lease_expires_at=None if r.lease_expires_at is None else from_ts(r.lease_expires_at),
    )


def stored_event(saga_id: str, row: Sequence[Any]) -> StoredEvent:
    """One row as ``LOAD`` selects it (position, seq, type, schema_version, data, recorded_at,
    writer, hash; ``data`` decoded) as a stored event."""
    position, seq, type_, schema_version, data, recorded_at, writer, hash_ = row
    try:
        parsed = ev.parse(type_, data, schema_version)
    except ValueError as e:
        raise StoreError(f"saga {saga_id}: event {seq} cannot be read: {e}") from e
    return StoredEvent(
        saga_id=saga_id, seq=seq, type=type_, data=data, recorded_at=from_ts(recorded_at),
        writer=writer, position=position, schema_version=schema_version, hash=hash_,
        _event=parsed,
    )

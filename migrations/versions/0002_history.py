"""The log as data: hash-chained events, append-only on SQLite too, attempts, failed steps.

- ``saga_events.hash``: every event's SHA-256 chained to the previous event of
  its saga (hash version 1, :func:`_event_hash`), filled in for the events
  already there, then required.
- SQLite refuses ``UPDATE`` and ``DELETE`` on ``saga_events`` with triggers
  (PostgreSQL's trigger has done so since the first revision).
- ``saga_attempts``: one row per attempt, filled in from the events
  (:func:`_attempts_from_events`).
- ``sagas.failed_step``, and the indexes a filtered, newest-first list needs.

The revision carries its own copy of the hash and of the attempts query, as
the library had them when it was frozen: a later change to the library must
not change what this revision does.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import hashlib
import json
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSONData = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

_events = sa.table(
    "saga_events",
    sa.column("position", sa.BigInteger), sa.column("saga_id", sa.String), sa.column("seq", sa.Integer),
    sa.column("type", sa.String), sa.column("schema_version", sa.Integer), sa.column("data", JSONData),
    sa.column("hash", sa.String),
)
_sagas = sa.table("sagas", sa.column("saga_id", sa.String), sa.column("name", sa.String),
                  sa.column("failed_step", sa.String))

_BATCH = 5000

_SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER saga_events_append_only_{op_name.lower()}
    BEFORE {op_name} ON saga_events
    BEGIN
        SELECT RAISE(ABORT, 'saga_events is append-only: {op_name} refused');
    END
    """
    for op_name in ("UPDATE", "DELETE")
]


# -- the hash, version 1 (copied from saga.inspection.audit; that copy may change, this one not) --

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)
"""Sorted keys, no spaces, UTF-8, no NaN: built once (``json.dumps`` with options builds an
encoder per call)."""


def _canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON: sorted keys, no spaces, UTF-8, no NaN or infinity, and a
    float with an integral value written as the integer (``1.0`` and ``1e16`` as ``1`` and
    ``10000000000000000``), since a database may hand back either form of the same number."""
    return _CANONICAL.encode(_numbers(value)).encode("utf-8")


def _numbers(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_numbers(v) for v in value]
    return value


_INTEGRAL_FLOAT_MARKS = (".0,", ".0]", ".0}", "e+")
"""How Python writes a float with an integral value: ``1.0`` before a delimiter, or ``1e+16``."""


def _canonical_text(value: Any) -> str:
    """:func:`_canonical_json` as text, the common case fast: the JSON is written once (in C),
    and only if it may hold a float with an integral value (a mark of one appears in it, if
    only inside a string) is it written again with those floats made integers."""
    text = _CANONICAL.encode(value)
    if any(mark in text for mark in _INTEGRAL_FLOAT_MARKS) or text.endswith(".0"):
        return _canonical_json(value).decode("utf-8")
    return text


def _event_hash(  # noqa: PLR0917 - the fields hashed, in their order
    saga_id: str, seq: int, type_: str, schema_version: int, data: Any, previous_hash: str | None,
) -> str:
    """The SHA-256 (hex) that chains one event to the previous event of its saga: over the
    canonical JSON of ``[saga_id, seq, type, schema_version, data, previous_hash]`` (hash
    version 1)."""
    # the canonical JSON of the list, written piece by piece (the same text, at less cost)
    body = (f"[{encode_basestring(saga_id)},{int(seq)},{encode_basestring(type_)},"
            f"{int(schema_version)},{_canonical_text(data)},"
            f"{'null' if previous_hash is None else encode_basestring_ascii(previous_hash)}]")
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


# -- the attempts from the events (copied from saga.inspection.stats; that copy may change) -------

_STARTED = "StepAttemptStarted"
_FAILED = "StepAttemptFailed"
_SUCCEEDED = "StepSucceeded"
_COMP_STARTED = "CompensationAttemptStarted"
_COMP_FAILED = "CompensationAttemptFailed"
_COMPENSATED = "StepCompensated"

_ATTEMPT_COLUMNS = ("saga_id", "name", "step", "compensation", "attempt", "started_at", "ended_at",
                    "duration", "outcome", "error_type")
"""The columns of ``saga_attempts`` filled in from the events."""


class _Epoch(sa.sql.expression.FunctionElement[float]):
    """Seconds since the epoch of an ISO 8601 text (each database parses it its own way)."""

    type = sa.Float(precision=53)
    inherit_cache = True
    name = "saga_epoch"


@compiles(_Epoch, "sqlite")
def _epoch_sqlite(element: _Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    # strftime('%s') gives whole seconds exactly (julianday() would lose tens of microseconds),
    # of the text without its fraction: SQLite keeps milliseconds, so "36.9997Z" would round up
    # to 37. The fraction after "YYYY-MM-DDTHH:MM:SS" is read as a number ("0" || ".123456Z" ->
    # 0.123456, "0" || "Z" -> 0, "0" || "+02:00" -> 0).
    text = compiler.process(element.clauses, **kw)
    whole = f"substr({text}, 1, 19) || ltrim(substr({text}, 20), '.0123456789')"
    return f"(CAST(strftime('%s', {whole}) AS REAL) + CAST('0' || substr({text}, 20) AS REAL))"


@compiles(_Epoch, "postgresql")
def _epoch_postgresql(element: _Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM CAST({compiler.process(element.clauses, **kw)} AS TIMESTAMPTZ))"


def _epoch(text: sa.ColumnElement[str]) -> _Epoch:
    return _Epoch(text)


def _attempts_from_events() -> sa.Subquery:
    """One row per attempt, derived from the events table by window functions.

    Columns as :data:`_ATTEMPT_COLUMNS`: the saga's ``name``; ``compensation``
    (bool); ``started_at``/``ended_at`` in seconds since the epoch, from the
    events' ``at`` (the coordinator's clock, as the timeline shows; ``ended_at`` is
    ``NULL`` while running); ``outcome`` (``succeeded``, ``failed``,
    ``timed_out``, ``lost`` or ``running``); ``duration`` in seconds of an
    attempt that succeeded, failed or timed out (``NULL`` for lost and running
    ones); ``error_type`` of a failure.
    Attempts of one saga run one at a time, so an attempt's outcome is the
    next attempt event of its saga.
    """
    types = (_STARTED, _COMP_STARTED, _FAILED, _COMP_FAILED, _SUCCEEDED, _COMPENSATED)
    events, sagas = _events, _sagas
    data = events.c.data

    def lead(value: sa.ColumnElement[Any]) -> sa.Over[Any]:
        return sa.func.lead(value).over(partition_by=events.c.saga_id, order_by=events.c.seq)

    rows = (
        sa.select(
            events.c.saga_id, events.c.type, _epoch(data["at"].as_string()).label("at"),
            data["step"].as_string().label("step"),
            data["attempt"].as_integer().label("attempt"),
            lead(events.c.type).label("next_type"),
            lead(_epoch(data["at"].as_string())).label("next_at"),
            lead(data["timed_out"].as_boolean()).label("next_timed_out"),
            lead(data["lost"].as_boolean()).label("next_lost"),
            lead(data["error_type"].as_string()).label("next_error_type"),
        )
        .where(events.c.type.in_(types))
        .subquery("attempt_events")
    )
    ended = rows.c.next_type.in_((_FAILED, _COMP_FAILED, _SUCCEEDED, _COMPENSATED))
    failed = rows.c.next_type.in_((_FAILED, _COMP_FAILED))
    outcome = sa.case(
        (rows.c.next_type.in_((_SUCCEEDED, _COMPENSATED)), "succeeded"),
        (sa.and_(failed, sa.func.coalesce(rows.c.next_timed_out, sa.false())), "timed_out"),
        (sa.and_(failed, sa.func.coalesce(rows.c.next_lost, sa.false())), "lost"),
        (failed, "failed"),
        else_="running",
    )
    return (
        sa.select(
            rows.c.saga_id, sagas.c.name, rows.c.step,
            (rows.c.type == _COMP_STARTED).label("compensation"),
            rows.c.attempt,
            rows.c.at.label("started_at"),
            sa.case((ended, rows.c.next_at)).label("ended_at"),
            sa.case((sa.and_(ended, sa.not_(sa.func.coalesce(rows.c.next_lost, sa.false()))),
                     rows.c.next_at - rows.c.at)).label("duration"),
            outcome.label("outcome"),
            sa.case((failed, rows.c.next_error_type)).label("error_type"),
        )
        .select_from(rows.join(sagas, sagas.c.saga_id == rows.c.saga_id))
        .where(rows.c.type.in_((_STARTED, _COMP_STARTED)))
        .subquery("attempts")
    )


# -- the revision ---------------------------------------------------------------------------------


def _fill_hashes(conn: sa.Connection) -> None:
    """Chain every saga's events in ``seq`` order, in batches of updates."""
    rows = conn.execute(
        sa.select(_events.c.position, _events.c.saga_id, _events.c.seq, _events.c.type,
                  _events.c.schema_version, _events.c.data)
        .order_by(_events.c.saga_id, _events.c.seq)
        .execution_options(yield_per=_BATCH)
    )
    update = (_events.update().where(_events.c.position == sa.bindparam("b_position"))
              .values(hash=sa.bindparam("b_hash")))
    pending: list[dict[str, Any]] = []
    current: str | None = None
    previous: str | None = None
    # read everything first on SQLite: one connection cannot update while a cursor is open
    # on the same table there without risking a half-read result
    for r in list(rows) if conn.dialect.name == "sqlite" else rows:
        if r.saga_id != current:
            current, previous = r.saga_id, None
        previous = _event_hash(r.saga_id, r.seq, r.type, r.schema_version, r.data, previous)
        pending.append({"b_position": r.position, "b_hash": previous})
        if len(pending) >= _BATCH:
            conn.execute(update, pending)
            pending = []
    if pending:
        conn.execute(update, pending)


def upgrade() -> None:
    conn = op.get_bind()
    pg = conn.dialect.name == "postgresql"
    op.add_column("saga_events", sa.Column("hash", sa.String(64), nullable=True))
    if pg:
        op.execute("ALTER TABLE saga_events DISABLE TRIGGER USER")
    _fill_hashes(conn)
    if pg:
        op.execute("ALTER TABLE saga_events ENABLE TRIGGER USER")
        op.alter_column("saga_events", "hash", existing_type=sa.String(64), nullable=False)
    else:
        with op.batch_alter_table("saga_events", recreate="always") as batch:
            batch.alter_column("hash", existing_type=sa.String(64), nullable=False)
        for sql in _SQLITE_TRIGGERS:
            op.execute(sql)

    op.add_column("sagas", sa.Column("failed_step", sa.String(128), nullable=True))
    step = sa.select(_events.c.data["step"].as_string()).where(
        _events.c.saga_id == _sagas.c.saga_id, _events.c.type == "StepFailed"
    ).order_by(_events.c.seq.desc()).limit(1).scalar_subquery()
    conn.execute(_sagas.update().values(failed_step=step))
    op.create_index("ix_sagas_created_at", "sagas", ["created_at", "saga_id"])
    op.create_index("ix_sagas_status_created_at", "sagas", ["status", "created_at", "saga_id"])
    op.create_index("ix_sagas_name_created_at", "sagas", ["name", "created_at", "saga_id"])
    op.create_index(
        "ix_sagas_failed_step", "sagas", ["failed_step", "created_at", "saga_id"],
        sqlite_where=sa.text("failed_step IS NOT NULL"),
        postgresql_where=sa.text("failed_step IS NOT NULL"),
    )

    attempts = op.create_table(
        "saga_attempts",
        sa.Column("saga_id", sa.String(200), primary_key=True),
        sa.Column("compensation", sa.Boolean, primary_key=True),
        sa.Column("step", sa.String(128), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("started_at", sa.Float(precision=53), nullable=False),
        sa.Column("ended_at", sa.Float(precision=53), nullable=True),
        sa.Column("duration", sa.Float(precision=53), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_type", sa.String(200), nullable=True),
        # keyed by its primary key alone on SQLite: one b-tree fewer to keep per attempt
        sqlite_with_rowid=False,
    )
    assert attempts is not None
    src = _attempts_from_events()
    conn.execute(attempts.insert().from_select(
        list(_ATTEMPT_COLUMNS), sa.select(*[src.c[k] for k in _ATTEMPT_COLUMNS])))
    op.create_index("ix_saga_attempts_step", "saga_attempts",
                    ["compensation", "name", "step", "duration", "outcome", "started_at"])
    op.create_index(
        "ix_saga_attempts_error_type", "saga_attempts", ["error_type", "saga_id"],
        sqlite_where=sa.text("error_type IS NOT NULL"),
        postgresql_where=sa.text("error_type IS NOT NULL"),
    )


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_saga_attempts_error_type", table_name="saga_attempts")
    op.drop_index("ix_saga_attempts_step", table_name="saga_attempts")
    op.drop_table("saga_attempts")
    for name in ("ix_sagas_failed_step", "ix_sagas_name_created_at", "ix_sagas_status_created_at",
                 "ix_sagas_created_at"):
        op.drop_index(name, table_name="sagas")
    with op.batch_alter_table("sagas") as batch:
        batch.drop_column("failed_step")
    if not pg:
        op.execute("DROP TRIGGER IF EXISTS saga_events_append_only_update")
        op.execute("DROP TRIGGER IF EXISTS saga_events_append_only_delete")
    with op.batch_alter_table("saga_events") as batch:
        batch.drop_column("hash")

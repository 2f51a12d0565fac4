"""The log as data: hash-chained events, append-only on SQLite too, attempts, failed steps.

- ``saga_events.hash``: every event's SHA-256 chained to the previous event of
  its saga (:func:`saga.inspection.audit.event_hash`), filled in for the events already
  there, then required.
- SQLite refuses ``UPDATE`` and ``DELETE`` on ``saga_events`` with triggers
  (PostgreSQL's trigger has done so since the first revision).
- ``saga_attempts``: one row per attempt, filled in from the events.
- ``sagas.failed_step``, and the indexes a filtered, newest-first list needs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from saga.inspection.audit import event_hash
from saga.inspection.stats import ATTEMPT_COLUMNS, attempts_from_events

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
_sagas = sa.table("sagas", sa.column("saga_id", sa.String), sa.column("failed_step", sa.String))

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
        previous = event_hash(r.saga_id, r.seq, r.type, r.schema_version, r.data, previous)
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
    src = attempts_from_events()
    conn.execute(attempts.insert().from_select(
        list(ATTEMPT_COLUMNS), sa.select(*[src.c[k] for k in ATTEMPT_COLUMNS])))
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

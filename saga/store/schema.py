"""The log's tables, declared once for SQLAlchemy Core (the migrations build the same)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

__all__ = ["HEAD", "attempts", "events", "metadata", "projections", "sagas"]

HEAD = "0004"
"""The migration revision this library's code expects (tests check it is Alembic's head)."""

metadata = sa.MetaData()

JSONData = sa.JSON().with_variant(postgresql.JSON(), "postgresql")
"""Event data as JSON text, kept as written (on PostgreSQL ``json``, not ``jsonb``, which would
reorder keys and drop the bytes that hash version 3 covers)."""

events = sa.Table(
    "saga_events",
    metadata,
    sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("saga_id", sa.String(200), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("schema_version", sa.SmallInteger, nullable=False),
    sa.Column("data", JSONData, nullable=False),
    sa.Column("recorded_at", sa.Float(precision=53), nullable=False),
    sa.Column("writer", sa.String(100), nullable=True),
    sa.Column("hash", sa.String(64), nullable=False),
    # what the hash covers (saga.store.hashing): 1 leaves recorded_at out (events written before
    # 0003), 2 covers the data's canonical JSON (before 0004), 3 the data's text as stored
    sa.Column("hash_version", sa.SmallInteger, nullable=False, server_default=sa.text("1")),
    sa.UniqueConstraint("saga_id", "seq", name="uq_saga_events_saga_id_seq"),
)

sagas = sa.Table(
    "sagas",
    metadata,
    sa.Column("saga_id", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_seq", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float(precision=53), nullable=False),
    sa.Column("updated_at", sa.Float(precision=53), nullable=False),
    sa.Column("wake_at", sa.Float(precision=53), nullable=True),
    sa.Column("lease_owner", sa.String(100), nullable=True),
    sa.Column("lease_expires_at", sa.Float(precision=53), nullable=True),
    sa.Column("failed_step", sa.String(128), nullable=True),
    sa.Index("ix_sagas_status_name", "status", "name"),
    sa.Index(
        "ix_sagas_wake_at",
        "wake_at",
        sqlite_where=sa.text("wake_at IS NOT NULL"),
        postgresql_where=sa.text("wake_at IS NOT NULL"),
    ),
    # saga list: newest first, filtered by nothing, status, name or the step that failed
    sa.Index("ix_sagas_created_at", "created_at", "saga_id"),
    sa.Index("ix_sagas_status_created_at", "status", "created_at", "saga_id"),
    sa.Index("ix_sagas_name_created_at", "name", "created_at", "saga_id"),
    sa.Index(
        "ix_sagas_failed_step",
        "failed_step", "created_at", "saga_id",
        sqlite_where=sa.text("failed_step IS NOT NULL"),
        postgresql_where=sa.text("failed_step IS NOT NULL"),
    ),
)

attempts = sa.Table(
    "saga_attempts",
    metadata,
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
    # one covering index: the step counts read it alone, and a percentile walks one step's durations
    sa.Index("ix_saga_attempts_step", "compensation", "name", "step", "duration", "outcome",
             "started_at"),
    sa.Index("ix_saga_attempts_error_type", "error_type", "saga_id",
             sqlite_where=sa.text("error_type IS NOT NULL"),
             postgresql_where=sa.text("error_type IS NOT NULL")),
    sqlite_with_rowid=False,  # one b-tree fewer to keep per attempt
)
"""One row per attempt (its outcome as :func:`saga.attempts.outcome_of` says): a projection of the
log, brought up to date past its watermark in ``saga_projections`` (:mod:`saga.store.projection`)
before the statistics and the search read it."""

projections = sa.Table(
    "saga_projections",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    # every event at or before this position of the log is in the projection
    sa.Column("position", sa.BigInteger, nullable=False),
)
"""Each projection of the log (``attempts``) and its watermark."""

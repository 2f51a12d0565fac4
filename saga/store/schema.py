"""The log's tables, declared once for SQLAlchemy Core (the migrations build the same)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

__all__ = ["HEAD", "events", "metadata", "sagas"]

HEAD = "0001"
"""The migration revision this library's code expects (tests check it is Alembic's head)."""

metadata = sa.MetaData()

JSONData = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

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
    sa.Index("ix_sagas_status_name", "status", "name"),
    sa.Index(
        "ix_sagas_wake_at",
        "wake_at",
        sqlite_where=sa.text("wake_at IS NOT NULL"),
        postgresql_where=sa.text("wake_at IS NOT NULL"),
    ),
)

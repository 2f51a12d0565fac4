"""The event log and the saga index; on PostgreSQL, events refuse UPDATE and DELETE.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONData = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "saga_events",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("saga_id", sa.String(200), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("schema_version", sa.SmallInteger, nullable=False),
        sa.Column("data", JSONData, nullable=False),
        sa.Column("recorded_at", sa.Float(precision=53), nullable=False),
        sa.Column("writer", sa.String(100), nullable=True),
        sa.UniqueConstraint("saga_id", "seq", name="uq_saga_events_saga_id_seq"),
    )
    op.create_table(
        "sagas",
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
    )
    op.create_index("ix_sagas_status_name", "sagas", ["status", "name"])
    op.create_index(
        "ix_sagas_wake_at",
        "sagas",
        ["wake_at"],
        sqlite_where=sa.text("wake_at IS NOT NULL"),
        postgresql_where=sa.text("wake_at IS NOT NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION saga_events_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'saga_events is append-only: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$
            """
        )
        op.execute(
            """
            CREATE TRIGGER saga_events_append_only
            BEFORE UPDATE OR DELETE ON saga_events
            FOR EACH ROW EXECUTE FUNCTION saga_events_append_only()
            """
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS saga_events_append_only ON saga_events")
        op.execute("DROP FUNCTION IF EXISTS saga_events_append_only()")
    op.drop_index("ix_sagas_wake_at", table_name="sagas")
    op.drop_index("ix_sagas_status_name", table_name="sagas")
    op.drop_table("sagas")
    op.drop_table("saga_events")

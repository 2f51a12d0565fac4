"""The attempts table as a projection of the log, and each event's data stored as written.

- ``saga_projections`` holds, per projection, the position of the log up to
  which it has been applied (its watermark). ``saga_attempts`` becomes such a
  projection: appends stop writing it, and a projector brings it up to date
  from the events past its watermark. Every event already in the log is in
  the table already (the appends kept it until now), so the watermark starts
  at the log's last position.
- On PostgreSQL ``saga_events.data`` becomes ``json`` (the text as written,
  keys in their order) instead of ``jsonb``, so that the hash of an event can
  cover the exact bytes stored (hash version 3). The hashes of the events
  already there (versions 1 and 2) cover their data's canonical JSON, which
  does not depend on how the text is laid out, so they hold as they are.
  SQLite kept the text as written all along.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    projections = op.create_table(
        "saga_projections",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    last = op.get_bind().execute(sa.text("SELECT COALESCE(MAX(position), 0) FROM saga_events")).scalar()
    op.bulk_insert(projections, [{"name": "attempts", "position": int(last or 0)}])
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("saga_events", "data", type_=postgresql.JSON(),
                        existing_type=postgresql.JSONB(), postgresql_using="data::json")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("saga_events", "data", type_=postgresql.JSONB(),
                        existing_type=postgresql.JSON(), postgresql_using="data::jsonb")
    op.drop_table("saga_projections")

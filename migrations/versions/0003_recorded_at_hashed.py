"""Recording times under the hash; no event replaced on SQLite, no TRUNCATE on PostgreSQL.

- ``saga_events.hash_version``: 1 for every event already there (its hash
  leaves ``recorded_at`` out, and stays as it is, so a head taken before
  still holds), 2 for the events written from now on, whose hash covers
  ``recorded_at`` too (:func:`saga.inspection.audit.event_hash`).
- SQLite refuses an insert whose ``(saga_id, seq)`` or ``position`` is taken:
  ``INSERT OR REPLACE`` and ``REPLACE INTO`` would delete the old row without
  firing the ``DELETE`` trigger (unless ``recursive_triggers`` is on).
- PostgreSQL refuses ``TRUNCATE`` on ``saga_events``, which fires no row trigger.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SQLITE_NO_REPLACE = """
CREATE TRIGGER saga_events_append_only_insert
BEFORE INSERT ON saga_events
WHEN EXISTS (SELECT 1 FROM saga_events WHERE saga_id = NEW.saga_id AND seq = NEW.seq)
  OR EXISTS (SELECT 1 FROM saga_events WHERE position = NEW.position)
BEGIN
    SELECT RAISE(ABORT, 'saga_events is append-only: an insert over an event refused');
END
"""

_POSTGRES_NO_TRUNCATE = """
CREATE TRIGGER saga_events_append_only_truncate
BEFORE TRUNCATE ON saga_events
FOR EACH STATEMENT EXECUTE FUNCTION saga_events_append_only()
"""


def upgrade() -> None:
    op.add_column("saga_events", sa.Column("hash_version", sa.SmallInteger, nullable=False,
                                           server_default=sa.text("1")))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRES_NO_TRUNCATE)
    else:
        op.execute(_SQLITE_NO_REPLACE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS saga_events_append_only_truncate ON saga_events")
        op.drop_column("saga_events", "hash_version")
    else:
        op.execute("DROP TRIGGER IF EXISTS saga_events_append_only_insert")
        # SQLite drops a column in place (a rebuilt table would lose the 0002 triggers)
        op.execute("ALTER TABLE saga_events DROP COLUMN hash_version")

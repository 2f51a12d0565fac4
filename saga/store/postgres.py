"""The scale-out backend: PostgreSQL through psycopg 3, with a connection pool."""

from __future__ import annotations

import sqlalchemy as sa

from .sql import SQLEventStore, dumps

__all__ = ["PostgresEventStore"]

_MIGRATION_LOCK = 0x5A6A_0001


class PostgresEventStore(SQLEventStore):
    """An event store in PostgreSQL (``postgresql+psycopg://user@host/db``)."""

    db_now = sa.literal_column("extract(epoch from clock_timestamp())::double precision")

    def _create_engine(self, url: str) -> sa.Engine:
        u = sa.make_url(url)
        if u.drivername in ("postgresql", "postgres"):
            u = u.set(drivername="postgresql+psycopg")
        return sa.create_engine(
            u, json_serializer=dumps, pool_size=10, max_overflow=20, pool_pre_ping=True
        )

    def _lock_for_migration(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})

"""The embedded backend: one SQLite file in WAL mode.

Writers take the database lock up front (``BEGIN IMMEDIATE``) so that the
fence check and the append cannot interleave with another process's; readers
run without a transaction (each read is one statement). ``synchronous=FULL``
makes every commit durable, power loss included.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import StaticPool

from .sql import EventStore, dumps

__all__ = ["SQLiteEventStore"]

BUSY_TIMEOUT_MS = 30_000


class SQLiteEventStore(EventStore):
    """An event store in a SQLite file (``sqlite:///path/to/file.db``)."""

    db_now = sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)")

    def _create_engine(self, url: str) -> sa.Engine:
        u = sa.make_url(url)
        memory = u.database in (None, "", ":memory:")
        kwargs: dict[str, Any] = {"json_serializer": dumps}
        if memory:
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            kwargs.update(connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000})
        engine = sa.create_engine(u, **kwargs)

        @event.listens_for(engine, "connect")
        def _configure(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.close()

        return engine

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        # BEGIN IMMEDIATE is issued here rather than from a "begin" event: an engine with
        # connection events dispatches them around every statement, which costs more
        # than the statements on the hot path.
        with self.engine.connect() as conn, conn.begin():
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

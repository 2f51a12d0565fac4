"""The embedded backend: one SQLite file in WAL mode, all of SQLite's SQL and locking.

Writers take the database lock up front (``BEGIN IMMEDIATE``) so that the
fence check and the append cannot interleave with another process's; readers
run without a transaction (each read is one statement). ``synchronous=FULL``
makes every commit durable, power loss included.

A read-only open neither creates the file nor switches its journal: it only
reads (a file that is missing is refused before SQLite could create it).

The hot statements run as the driver SQL SQLAlchemy compiles from the shared
Core statements once (:mod:`saga.store.statements`): ``exec_driver_sql``
skips the per-call compile cache and parameter processing, a good part of an
append's cost on SQLite.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import StaticPool

from ..errors import InvalidInput, SagaNotFound
from . import statements as q
from .schema import events, sagas
from .sql import Append, SqlEventStore
from .urls import parse, redact

__all__ = ["SQLiteEventStore"]

BUSY_TIMEOUT_MS = 30_000

_NOW: sa.ColumnElement[float] = sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)")
"""SQLite's clock as epoch seconds (for ``recorded_at``)."""

_INSERT = events.insert().values(recorded_at=_NOW)
_INSERT_KEYS = ["saga_id", "seq", "type", "schema_version", "data", "writer"]


class SQLiteEventStore(SqlEventStore):
    """An event store in a SQLite file (``sqlite:///path/to/file.db``)."""

    def _create_engine(self, url: str) -> sa.Engine:
        u = parse(url)
        if u.username or u.password or u.host or u.port:
            raise InvalidInput(
                f"a SQLite URL names a file, not a server: {redact(url)} (write sqlite:///path.db)"
            )
        memory = u.database in (None, "", ":memory:")
        if self.schema == "require" and not memory and not Path(str(u.database)).exists():
            raise SagaNotFound(f"no database at {u.database} (nothing has been started there)")
        kwargs: dict[str, Any] = {}
        if memory:
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            kwargs.update(connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000})
        engine = sa.create_engine(u, **kwargs)
        wal = not memory and self.schema != "require"  # a reader leaves the journal as it is

        @event.listens_for(engine, "connect")
        def _configure(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            if wal:
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

    @functools.cached_property
    def _driver_sql(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """The hot statements as sqlite3's SQL and the order of their parameters."""
        out = {}
        for name, stmt, keys in (
            ("append", q.APPEND, None),
            ("append_fenced", q.APPEND_FENCED, None),
            ("insert", _INSERT, _INSERT_KEYS),
            ("create", q.CREATE, [c.name for c in sagas.c]),
        ):
            compiled = stmt.compile(dialect=self.engine.dialect, column_keys=keys)
            out[name] = (compiled.string, tuple(compiled.positiontup or ()))
        return out

    def _run(self, conn: sa.Connection, name: str, params: dict[str, Any]) -> int:
        sql, order = self._driver_sql[name]
        return conn.exec_driver_sql(sql, tuple(params[k] for k in order)).rowcount

    def _insert_saga(self, conn: sa.Connection, values: dict[str, Any], rows: list[dict[str, Any]]
                     ) -> None:
        self._run(conn, "create", values)
        self._insert_events(conn, rows)

    def _insert_events(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        sql, order = self._driver_sql["insert"]
        conn.exec_driver_sql(sql, [tuple(r[k] for k in order) for r in rows])  # data: JSON text

    def _append_alone(self, a: Append) -> None:
        with self._write() as conn:
            if self._run(conn, "append" if a.owner is None else "append_fenced", a.params()) != 1:
                self._refused(conn, a.saga_id, a.expected)
            self._insert_events(conn, a.rows)

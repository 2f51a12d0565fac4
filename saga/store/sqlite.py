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
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.compiler import SQLCompiler

from saga.errors import InvalidInput, SagaNotFound
from saga.store import statements as q
from saga.store.appends import Append, refusal
from saga.store.base import StoredEvent
from saga.store.chain import HashCache, chain
from saga.store.hashing import HASH_VERSION
from saga.store.rules import check_page, wake_kept
from saga.store.schema import events, sagas
from saga.store.sql import SqlEventStore
from saga.store.statements import Epoch, stored_event
from saga.store.transient import translated
from saga.store.urls import parse, redact

__all__ = ["SQLiteEventStore"]

BUSY_TIMEOUT_MS = 30_000

_INSERT = events.insert().values(hash_version=sa.literal_column(str(HASH_VERSION)))
_INSERT_KEYS = ["saga_id", "seq", "type", "schema_version", "data", "recorded_at", "writer", "hash"]


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

    def files(self) -> tuple[Path, ...]:
        """The files that hold this database: the file itself and its ``-wal``, ``-shm`` and
        ``-journal`` companions, whether they exist now or not (none for ``:memory:``)."""
        name = self.engine.url.database
        if name in (None, "", ":memory:"):
            return ()
        path = Path(str(name))
        return (path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")))

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        # BEGIN IMMEDIATE is issued here rather than from a "begin" event: an engine with
        # connection events dispatches them around every statement, which costs more
        # than the statements on the hot path.
        with self.engine.connect() as conn, conn.begin():
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    @contextmanager
    def _snapshot(self) -> Iterator[sa.Connection]:
        # A read transaction: SQLite's snapshot starts with its first read. The driver leaves
        # transactions to us, so the BEGIN and the ROLLBACK are ours.
        with self.engine.connect() as conn, conn.begin():
            conn.exec_driver_sql("BEGIN")
            try:
                yield conn
            finally:
                conn.exec_driver_sql("ROLLBACK")

    @functools.cached_property
    def _driver_sql(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """The hot statements as sqlite3's SQL and the order of their parameters (a parameter
        the statement fixes itself, such as the page's ``OFFSET 0``, is written in)."""
        out = {}
        for name, stmt, keys in (
            *((_variant(*key), stmt, None) for key, stmt in q.APPEND_VARIANTS.items()),
            ("insert", _INSERT, _INSERT_KEYS),
            ("create", q.CREATE, [c.name for c in sagas.c]),
            ("refused", q.REFUSED, None),
            ("load", q.LOAD, None),
            ("load_page", q.LOAD_PAGE, None),
            ("exists", q.EXISTS, None),
            ("previous_hash", q.PREVIOUS_HASH, None),
        ):
            compiled = stmt.compile(dialect=self.engine.dialect, column_keys=keys)
            order = tuple(compiled.positiontup or ())
            sql = compiled.string
            if "param_1" in order:  # LIMIT ? OFFSET ?: the offset is always 0
                assert order[-1] == "param_1" and sql.rstrip().endswith("OFFSET ?")
                sql, order = sql.rstrip()[: -len("OFFSET ?")].rstrip(), order[:-1]
            out[name] = (sql, order)
        return out

    def _run(self, db: sqlite3.Connection, name: str, params: dict[str, Any]) -> sqlite3.Cursor:
        sql, order = self._driver_sql[name]
        return db.execute(sql, tuple(params[k] for k in order))

    # The hot path talks to sqlite3 directly, on connections of its own: SQLAlchemy's
    # per-statement machinery, and even a pool checkout, cost more than SQLite's statements
    # themselves. Driver errors become SQLAlchemy's, so fault handling sees them as it sees
    # any other.

    @functools.cached_property
    def _spare(self) -> _Spare:
        return _Spare(self.engine)

    @contextmanager
    def _raw(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        spare = self._spare
        db = spare.take()
        try:
            if write:
                db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            if write:
                db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise sa_exc.DBAPIError.instance(None, None, e, sqlite3.Error) from e
        finally:
            spare.give(db)

    def close(self) -> None:
        if "_spare" in self.__dict__:
            self._spare.close()
        super().close()

    def _insert_rows(self, db: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
        if rows:
            sql, order = self._driver_sql["insert"]
            db.executemany(sql, [tuple(r[k] for k in order) for r in rows])  # data: JSON text

    @functools.cached_property
    def _rows_as_written(self) -> HashCache[tuple[str, float | None]]:
        """The status and wake-up time each recently written saga had at its last ``seq`` (a
        hint: an append that keeps them does not set them, and checks that they are still
        the same)."""
        return HashCache()

    def _create_saga(self, values: dict[str, Any], rows: list[dict[str, Any]], *, wake: bool
                     ) -> None:
        with self._raw(write=True) as db:
            self._run(db, "create", values)
            self._insert_rows(db, rows)
        self._rows_as_written.put(values["saga_id"], values["last_seq"],
                                  (values["status"], values["wake_at"]))

    def _append_alone(self, a: Append) -> None:
        fenced = a.owner is not None
        params = a.params()
        # Setting a column, even to what it is, rewrites its indexes' entries: an append
        # that keeps the status or the wake-up time leaves them out.
        hint = self._rows_as_written.get(a.saga_id, a.expected)
        sets_status = hint is None or hint[0] != a.status
        sets_wake = hint is None or not wake_kept(hint[1], a.wake_at, a.now)
        with self._raw(write=True) as db:
            narrow = not (sets_status and sets_wake)
            moved = ((narrow and self._run(db, _variant(fenced, sets_status, sets_wake), params
                                           ).rowcount == 1)
                     or self._run(db, _variant(fenced, True, True), params).rowcount == 1)
            if not moved:
                row = self._run(db, "refused", {"b_saga_id": a.saga_id}).fetchone()
                raise refusal(row, a.saga_id, a.expected)
            if not a.chained:  # the seq check passed: the previous event is there
                found = self._run(db, "previous_hash",
                                  {"b_saga_id": a.saga_id, "b_seq": a.expected}).fetchone()
                chain(a.rows, found[0])
            self._insert_rows(db, a.rows)
        kept = hint[1] if hint is not None and not sets_wake else a.wake_at
        self._rows_as_written.put(a.saga_id, a.expected + len(a.rows), (a.status, kept))

    @translated
    def load(self, saga_id: str, *, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        check_page(after, limit)
        params = {"b_saga_id": saga_id, "b_after": after, "b_limit": limit}
        with self._raw(write=False) as db:
            rows = self._run(db, "load" if limit is None else "load_page", params).fetchall()
            if not rows and self._run(db, "exists", params).fetchone() is None:
                raise SagaNotFound(f"no saga has id {saga_id!r}")
        out = [stored_event(saga_id, (p, seq, t, v, json.loads(d), at, w, h))
               for p, seq, t, v, d, at, w, h in rows]
        if out:
            self._hashes.put(saga_id, out[-1].seq, out[-1].hash)
        return out


@compiles(Epoch, "sqlite")
def _epoch(element: Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    # strftime('%s') gives whole seconds exactly (julianday() would lose tens of microseconds),
    # of the text without its fraction: SQLite keeps milliseconds, so "36.9997Z" would round up
    # to 37. The fraction after "YYYY-MM-DDTHH:MM:SS" is read as a number ("0" || ".123456Z" ->
    # 0.123456, "0" || "Z" -> 0, "0" || "+02:00" -> 0).
    text = compiler.process(element.clauses, **kw)
    whole = f"substr({text}, 1, 19) || ltrim(substr({text}, 20), '.0123456789')"
    return f"(CAST(strftime('%s', {whole}) AS REAL) + CAST('0' || substr({text}, 20) AS REAL))"


class _Spare:
    """The hot path's own sqlite3 connections, each opened (and configured) by the engine and
    then detached from its pool, kept while idle: taking one is a list pop.

    As many are open as threads ever used the store at once. None crosses a ``fork``: a
    child opens its own (SQLite forbids using a parent's).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._idle: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False

    def take(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            self._idle, self._pid = [], os.getpid()  # the parent's, left alone
        try:
            return self._idle.pop()
        except IndexError:
            pooled = self._engine.raw_connection()
            db = pooled.driver_connection
            assert isinstance(db, sqlite3.Connection)
            pooled.detach()
            return db

    def give(self, db: sqlite3.Connection) -> None:
        if self._closed or self._pid != os.getpid():
            db.close()
        else:
            self._idle.append(db)

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()


def _variant(fenced: bool, sets_status: bool, sets_wake: bool) -> str:
    """The name of an append statement of :data:`~saga.store.statements.APPEND_VARIANTS`."""
    return (f"append{'_fenced' if fenced else ''}{'' if sets_status else '_same_status'}"
            f"{'' if sets_wake else '_same_wake'}")

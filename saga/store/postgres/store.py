"""The PostgreSQL event store (see the package's documentation for how it claims, fences,
keeps time and wakes workers)."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from saga.clock import Clock, Wakeup
from saga.errors import InvalidInput, SagaError, StoreError
from saga.store import statements as q
from saga.store.appends import Append
from saga.store.base import StoredEvent
from saga.store.chain import chain
from saga.store.postgres import statements as pg
from saga.store.postgres.group import GroupCommit, Pending
from saga.store.postgres.notify import PostgresListener
from saga.store.postgres.server_clock import DatabaseClock
from saga.store.rules import dumps
from saga.store.schema import events
from saga.store.sql import SqlEventStore
from saga.store.transient import first_line, translated
from saga.store.urls import parse

__all__ = ["PostgresEventStore"]

_MIGRATION_LOCK = 0x5A6A_0001
CONNECT_TIMEOUT = 5
"""Seconds a new connection may take before the attempt fails."""

log = logging.getLogger("saga.store")


class PostgresEventStore(SqlEventStore):
    """An event store in PostgreSQL (``postgresql+psycopg://user@host/db``)."""

    _listener: PostgresListener | None = None
    _clock: DatabaseClock | None = None
    _listener_lock = threading.Lock()

    def _create_engine(self, url: str) -> sa.Engine:
        u = parse(url)
        if u.drivername in ("postgresql", "postgres"):
            u = u.set(drivername="postgresql+psycopg")
        if "connect_timeout" not in u.query:
            u = u.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT)})
        try:
            return sa.create_engine(
                # No pre-ping: it costs a round trip per transaction, and a pooled connection
                # found dead on first use is a transient fault that is retried anyway.
                u, json_serializer=dumps, pool_size=30, max_overflow=0,
            )
        except (sa_exc.ArgumentError, TypeError, ValueError) as e:
            raise InvalidInput(f"bad PostgreSQL URL option: {first_line(e)}") from None

    def _lock_for_migration(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        # Every read is one statement: in autocommit it is its own transaction.
        with self._autocommit() as conn:
            yield conn

    @contextmanager
    def _autocommit(self) -> Iterator[sa.Connection]:
        """A connection on which each statement is a transaction of its own: one round trip,
        where an explicit transaction costs three (``BEGIN``, the statement, ``COMMIT``). The
        hot path's writes are single statements (their parts joined in CTEs), so they run
        here too; a lost answer is handled as a lost ``COMMIT``'s is."""
        # (Set on the driver's connection: SQLAlchemy's isolation_level option would make
        # every later transaction on it spell out BEGIN ISOLATION LEVEL READ COMMITTED.)
        with self.engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            driver.autocommit = True
            try:
                yield conn
            finally:
                if not driver.closed:
                    driver.autocommit = False

    # -- writing ----------------------------------------------------------------------------

    def _create_saga(self, values: dict[str, Any], rows: list[dict[str, Any]], *, wake: bool
                     ) -> None:
        stmt = pg.CREATE_WITH_EVENTS_AND_NOTIFY if wake else pg.CREATE_WITH_EVENTS
        with self._autocommit() as conn:
            conn.execute(stmt, {**values, "events": pg.events_document(rows)})

    def _append_alone(self, a: Append) -> None:
        # The batch statement with one saga: the fence and the events in one round trip,
        # one transaction. What follows it only explains a refusal or wakes idle workers.
        with self._autocommit() as conn:
            won = conn.execute(pg.BATCH_APPEND, {
                "sagas": pg.sagas_document([a]), "events": pg.events_document(a.rows),
                "ids": [a.saga_id],
            }).first()
            if won is None:
                self._refused(conn, a.saga_id, a.expected)
            if a.wake:
                self._wake(conn)

    def _wake(self, conn: sa.Connection) -> None:
        """Tell idle workers that a saga became due (at once: ``conn`` is in autocommit)."""
        conn.execute(pg.NOTIFY)

    @functools.cached_property
    def _group(self) -> GroupCommit:
        return GroupCommit(self._append_batch)

    def _chain_from_log(self, a: Append) -> None:
        """Chain ``a``'s events from the previous event's hash, read from the log (a hash never
        changes once written, so reading it before the append's transaction is safe)."""
        with self._read() as conn:
            found = conn.execute(q.PREVIOUS_HASH, {"b_saga_id": a.saga_id, "b_seq": a.expected}
                                 ).first()
            if found is None:  # the log does not reach the seq the append follows
                self._refused(conn, a.saga_id, a.expected)
        assert found is not None
        chain(a.rows, found[0])

    def _commit_append(self, append: Append) -> None:
        if not append.chained:
            self._chain_from_log(append)
        # Appends of concurrent drives share a transaction (saga.store.postgres.group).
        item = Pending(append.saga_id, append)
        self._group.submit(item)  # raises this append's own refusal
        if item.solo:
            self._append_alone(append)

    def _append_batch(self, batch: list[Pending]) -> None:
        """Commit the appends of many sagas in one transaction (see :mod:`.group`)."""
        if len(batch) == 1:  # nothing to share
            only = batch[0]
            try:
                self._append_alone(only.payload)
            except SagaError as e:
                only.error = e
            except sa_exc.SQLAlchemyError:
                only.error, only.solo = None, True  # again on its own, with its fault handling
            return
        appends: list[Append] = [it.payload for it in batch]
        # The batch travels as two JSON documents: one text parameter each is far cheaper
        # for the driver to send than a column of arrays.
        try:
            with self._autocommit() as conn:  # the statement is the transaction
                won = set(conn.execute(pg.BATCH_APPEND, {
                    "sagas": pg.sagas_document(appends),
                    "events": pg.events_document(row for a in appends for row in a.rows),
                    "ids": [it.key for it in batch],
                }).scalars())
        except sa_exc.SQLAlchemyError as e:
            # Nothing is known to have committed: each append runs again on its own, with
            # its own fault handling (and its own check for a commit that did happen).
            log.warning("a group commit of %d appends failed, appending each alone: %s",
                        len(batch), first_line(e))
            for it in batch:
                it.error, it.solo = None, True
            return
        # Committed. What is left explains refusals and wakes idle workers; an append whose
        # refusal cannot be read runs again alone, to be refused with its reason.
        if len(won) == len(appends) and not any(a.wake for a in appends):
            return  # (the common case: nothing to explain, no one to wake)
        try:
            with self._autocommit() as conn:
                for it, a in zip(batch, appends, strict=True):
                    if a.saga_id not in won:
                        try:
                            self._refused(conn, a.saga_id, a.expected)
                        except SagaError as e:
                            it.error = e
                        except sa_exc.SQLAlchemyError:
                            it.error, it.solo = None, True
                if any(a.wake for a in appends if a.saga_id in won):
                    self._wake(conn)
        except sa_exc.SQLAlchemyError as e:
            log.warning("after a group commit: %s", first_line(e))

    @functools.cached_property
    def _server_clock(self) -> Clock:
        return self.default_clock()

    def _recording_time(self) -> float:
        # the server's clock, as DatabaseClock follows it (microseconds, no round trip)
        return self._server_clock.now().timestamp()

    # -- claiming ---------------------------------------------------------------------------

    @staticmethod
    def _claim_params(owner: str, now: datetime, *, until: datetime,
                      names: Iterable[str] | None, limit: int, exclude: Iterable[str]
                      ) -> dict[str, Any]:
        return {
            "owner": owner, "now": now.timestamp(), "until": until.timestamp(), "limit": limit,
            "names": None if names is None else list(names), "skip": list(exclude),
        }

    @translated
    def claim(
        self,
        owner: str,
        now: datetime,
        *,
        until: datetime,
        names: Iterable[str] | None = None,
        limit: int = 100,
        exclude: Iterable[str] = (),
    ) -> list[str]:
        params = self._claim_params(owner, now, until=until, names=names, limit=limit,
                                    exclude=exclude)
        with self._autocommit() as conn:  # one statement: its own transaction
            return [str(r) for r in conn.execute(pg.CLAIM, params).scalars()]

    @translated
    def claim_loaded(
        self,
        owner: str,
        now: datetime,
        *,
        until: datetime,
        names: Iterable[str] | None = None,
        limit: int = 100,
        exclude: Iterable[str] = (),
    ) -> list[tuple[str, list[StoredEvent] | None]]:
        # The events are read in the claim's statement. Only the lease holder appends with a
        # fence; an operator's append in between is caught by the seq check, as after a load.
        params = self._claim_params(owner, now, until=until, names=names, limit=limit,
                                    exclude=exclude)
        with self._autocommit() as conn:  # one statement: its own transaction
            rows = conn.execute(pg.CLAIM_LOADED, params).all()
        by_saga: dict[str, list[Any]] = {}
        last_seq: dict[str, int] = {}
        for r in rows:  # saga_id, last_seq, then the event's columns as LOAD selects them
            found = by_saga.setdefault(str(r[0]), [])
            last_seq[str(r[0])] = r[1]
            if r[3] is not None:  # seq: the saga has events
                found.append(r)
        return [(sid, self._stored(sid, (r[2:] for r in found))
                 if found and len(found) == last_seq[sid] else None)
                for sid, found in by_saga.items()]

    # -- the read side ----------------------------------------------------------------------

    @contextmanager
    def _snapshot(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn

    def _by_saga_id(self, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
        return column.collate("C")

    def _head_position(self, wait: float) -> int:
        """The last position of the log once every transaction that was writing events when it
        was read has ended: no event at or before it can appear later.

        An append can commit after one that drew a later position. Positions
        come from a sequence, drawn as rows are inserted, so a later one never
        goes to an event written after this looked; an earlier one is either
        visible already or held by a transaction writing events now.
        """
        with self.engine.connect() as conn:
            position = conn.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0
            writing = set(conn.execute(pg.WRITING_EVENTS).scalars())
            conn.rollback()
            deadline = time.monotonic() + wait
            while writing:
                if time.monotonic() >= deadline:
                    raise StoreError(f"a transaction writing events is still open after {wait:g} s: "
                                     "a head cannot be taken until it ends")
                time.sleep(0.01)
                writing &= set(conn.execute(pg.WRITING_EVENTS).scalars())
                conn.rollback()
        return int(position)

    # -- time and wake-ups ------------------------------------------------------------------

    def default_clock(self) -> Clock:
        with self._listener_lock:
            if self._clock is None:
                self._clock = DatabaseClock(self.engine)
            return self._clock

    def subscribe(self) -> Wakeup:
        with self._listener_lock:
            if self._listener is None:
                conninfo = self.engine.url.set(drivername="postgresql").render_as_string(
                    hide_password=False
                )
                self._listener = PostgresListener(conninfo)
            listener = self._listener
        return listener.subscribe()

    def listening(self, timeout: float = 5.0) -> bool:
        """Wait until this store's notification listener is connected (after :meth:`subscribe`)."""
        listener = self._listener
        return listener is not None and listener.listening(timeout)

    def close(self) -> None:
        with self._listener_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        super().close()

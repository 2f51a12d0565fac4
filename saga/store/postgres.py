"""The scale-out backend: PostgreSQL through psycopg 3, with a connection pool.

Many workers, on one or many machines, share one database; PostgreSQL is
the only thing they agree through.

Claiming. A worker leases due sagas with ``SELECT … FOR UPDATE SKIP LOCKED``
then ``UPDATE`` in one transaction (:meth:`~saga.store.sql.EventStore.claim`): two
workers never claim the same saga, and neither waits for the other.

Fencing. Every append is one ``UPDATE sagas … WHERE last_seq = :expected AND
(the lease is free, ours, or expired)`` followed by the ``INSERT`` of the
events. Under READ COMMITTED a second appender blocks on the row lock of the
first and, when the first commits, PostgreSQL re-evaluates its ``WHERE``
against the new row: ``last_seq`` moved, zero rows, the append is refused.
The unique ``(saga_id, seq)`` constraint is the second line of defence.

Time. Lease expiry and ``wake_at`` are compared with the ``now`` the
coordinator passes in, so that the virtual clock of the tests keeps working;
on PostgreSQL the coordinator's default clock is :class:`DatabaseClock`,
whose ``now()`` follows the server's ``clock_timestamp()``: the offset to
the server is sampled over one round trip (at its midpoint) and re-sampled
every minute, and time in between advances with the local monotonic clock.
Every worker therefore reads the same clock, the server's, and a machine
whose wall clock is minutes off neither steals live leases nor sleeps
through retries. (The error is half a round trip plus a minute of local
drift, milliseconds against leases of tens of seconds.) Recording times
(``recorded_at``) are written by the server itself.

Waking up. A transaction that makes a saga due with no one holding it
(``start``, an operator's cancel or retry) also runs ``pg_notify``; each
process keeps one dedicated ``LISTEN`` connection (:mod:`saga.store.notify`),
so idle workers wake within milliseconds of the commit. Workers still poll,
which covers lost notifications and sagas whose lease or backoff runs out.

Faults. Dropped connections, a restarted server, ``pg_terminate_backend``,
serialization failures and deadlocks are retried, the whole transaction
again (:mod:`saga.store.faults`); a stale pooled connection fails on first
use, which is such a fault: the pool drops it and the retry reconnects.

Group commit. Appends from concurrent drives in one process share a
transaction (:mod:`saga.store.group`): one statement checks every saga's
``seq`` and lease and inserts the events of those that pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa

from ..clock import Clock, SystemClock, Wakeup
from ..state import SagaStatus
from .base import StoredEvent
from .group import insert_events
from .notify import CHANNEL, PostgresListener
from .sql import EventStore, dumps, from_ts, to_ts, translated

__all__ = ["DatabaseClock", "PostgresEventStore"]

_MIGRATION_LOCK = 0x5A6A_0001

log = logging.getLogger("saga.store")

# Claiming in one statement, built once: the ids come as array parameters, so that the SQL
# is the same whatever their number (compiled once, then a prepared statement). Rows
# another worker is claiming (or appending to) are skipped, not waited for; a row updated
# meanwhile is re-checked against the WHERE clause.
_CLAIMED = f"""
WITH picked AS (
    SELECT saga_id, wake_at FROM sagas
    WHERE wake_at <= :now
      AND status IN ('{SagaStatus.RUNNING.value}', '{SagaStatus.COMPENSATING.value}')
      AND (lease_owner IS NULL OR lease_expires_at < :now)
      AND (CAST(:names AS text[]) IS NULL OR name = ANY(CAST(:names AS text[])))
      AND NOT (saga_id = ANY(CAST(:skip AS text[])))
    ORDER BY wake_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE sagas AS s SET lease_owner = :owner, lease_expires_at = :until
    FROM picked WHERE s.saga_id = picked.saga_id
    RETURNING s.saga_id, s.last_seq, picked.wake_at
)
"""
_CLAIM = sa.text(_CLAIMED + "SELECT saga_id FROM claimed ORDER BY wake_at, saga_id")
# ... and with the events of every saga it took, which the worker would otherwise load next,
# one round trip each. (They are read as of the statement's start: ``last_seq``, from the row
# as locked, tells whether an append committed in between.)
_CLAIM_LOADED = sa.text(_CLAIMED + """
SELECT c.saga_id, c.last_seq, e.position, e.seq, e.type, e.schema_version, e.data, e.recorded_at, e.writer
FROM claimed AS c LEFT JOIN saga_events AS e ON e.saga_id = c.saga_id
ORDER BY c.wake_at, c.saga_id, e.seq
""")

_NOTIFY = sa.text("SELECT pg_notify(:channel, '')").bindparams(channel=CHANNEL)

# A new saga's row and its first events in one statement (one round trip less than two).
_CREATE_WITH_EVENTS = sa.text("""
WITH created AS (
    INSERT INTO sagas (saga_id, name, version, status, last_seq, created_at, updated_at,
                       wake_at, lease_owner, lease_expires_at)
    VALUES (:saga_id, :name, :version, :status, :last_seq, :created_at, :updated_at,
            :wake_at, :lease_owner, :lease_expires_at)
    RETURNING saga_id
)
""" + insert_events.format(accepted="created"))


class DatabaseClock(SystemClock):
    """The database server's clock, read locally: ``now()`` costs no round trip.

    ``resync`` is how many seconds pass between two samples of the offset.
    If the server cannot be reached, the last offset is kept (at first: the
    local clock) and sampling is tried again five seconds later. ``now()``
    never goes backwards.
    """

    def __init__(self, engine: sa.Engine, *, resync: float = 60.0) -> None:
        self._engine = engine
        self._resync = resync
        self._lock = threading.Lock()
        self._base_server = time.time()
        self._base_local = time.monotonic()
        self._next_sync = 0.0
        self._last = 0.0

    def _sample(self) -> None:
        with self._engine.connect() as conn:
            before = time.monotonic()
            server = conn.execute(
                sa.text("SELECT extract(epoch from clock_timestamp())::double precision")
            ).scalar_one()
            after = time.monotonic()
        self._base_server, self._base_local = float(server), (before + after) / 2

    def offset(self) -> float:
        """Seconds the server's clock is ahead of this machine's wall clock."""
        return self.now().timestamp() - time.time()

    def now(self) -> datetime:
        with self._lock:
            local = time.monotonic()
            if local >= self._next_sync:
                try:
                    self._sample()
                    self._next_sync = local + self._resync
                except sa.exc.SQLAlchemyError as e:
                    log.warning("cannot read the database's clock, keeping the last offset: %s", e)
                    self._next_sync = local + 5.0
                local = time.monotonic()
            ts = max(self._base_server + (local - self._base_local), self._last)
            self._last = ts
        return from_ts(ts)


class PostgresEventStore(EventStore):
    """An event store in PostgreSQL (``postgresql+psycopg://user@host/db``)."""

    db_now = sa.literal_column("extract(epoch from clock_timestamp())::double precision")
    group_commit = True  # concurrent drives' appends share a transaction (saga.store.group)

    _listener: PostgresListener | None = None
    _clock: DatabaseClock | None = None
    _listener_lock = threading.Lock()

    def _create_engine(self, url: str) -> sa.Engine:
        u = sa.make_url(url)
        if u.drivername in ("postgresql", "postgres"):
            u = u.set(drivername="postgresql+psycopg")
        return sa.create_engine(
            # No pre-ping: it costs a round trip per transaction, and a pooled connection
            # found dead on first use is a transient fault that is retried anyway.
            u, json_serializer=dumps, pool_size=30, max_overflow=0,
        )

    def _lock_for_migration(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        # Every read is one statement: in autocommit it is its own transaction, which
        # spares the BEGIN and ROLLBACK round trips of an explicit one.
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

    def _insert_saga(self, conn: sa.Connection, values: dict[str, Any], rows: list[dict[str, Any]]
                     ) -> None:
        conn.execute(_CREATE_WITH_EVENTS, {**values, "events": dumps(rows)})

    def _wake(self, conn: sa.Connection) -> None:
        conn.execute(_NOTIFY)

    @staticmethod
    def _claim_params(owner: str, now: datetime, *, until: datetime,
                      names: Iterable[str] | None, limit: int, exclude: Iterable[str]
                      ) -> dict[str, Any]:
        return {
            "owner": owner, "now": to_ts(now), "until": to_ts(until), "limit": limit,
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
        with self._write() as conn:
            return [str(r) for r in conn.execute(_CLAIM, params).scalars()]

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
        with self._write() as conn:
            rows = conn.execute(_CLAIM_LOADED, params).all()
        by_saga: dict[str, list[Any]] = {}
        last_seq: dict[str, int] = {}
        for r in rows:
            found = by_saga.setdefault(str(r.saga_id), [])
            last_seq[str(r.saga_id)] = r.last_seq
            if r.seq is not None:
                found.append(r)
        return [(sid, self._stored(sid, found) if found and len(found) == last_seq[sid] else None)
                for sid, found in by_saga.items()]

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

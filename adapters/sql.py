"""``SqlParticipant``: work in the participant's own database, once per idempotency key."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite

from saga.codec import InvalidValue, to_json_value
from saga.definition import StepContext

from .base import Adapter, recorded, run_to_end
from .errors import InvalidAdapter, InvalidRequest, ParticipantRejected, ParticipantUnavailable

__all__ = ["SqlParticipant"]

Work = Callable[[sa.Connection], Any]


class SqlParticipant(Adapter):
    """Runs ``work(connection)`` in one transaction of a participant's database, at most once
    per idempotency key: ``participant(ctx, work)``.

    The transaction also writes a row to an inbox table (``inbox``, created on
    first use) keyed by ``ctx.idempotency_key`` and holding ``work``'s result
    as JSON. An attempt that finds its key there returns the recorded result
    without running ``work``; two attempts that race wait for each other on
    the key, so ``work`` commits once. ``url`` is any SQLAlchemy URL (SQLite and
    PostgreSQL are tested). ``lock_timeout`` (seconds) bounds the wait for
    another transaction's locks (SQLite's busy timeout, PostgreSQL's
    ``lock_timeout``); running out is a retryable error.

    ``work`` raising rolls everything back and the error propagates as it is.
    A lost connection, lock timeout, deadlock or serialization failure raises
    :class:`~saga.adapters.ParticipantUnavailable` (retryable); any other error
    the database raises (a constraint, bad SQL) raises
    :class:`~saga.adapters.ParticipantRejected` (a :class:`~saga.PermanentError`).
    A result that is not JSON is refused, before anything is committed.
    """

    kind: ClassVar[str] = "sql"

    def __init__(self, url: str, *, inbox: str = "saga_inbox", lock_timeout: float = 30.0) -> None:
        try:
            self._url = sa.make_url(url)
        except (exc.ArgumentError, TypeError, ValueError) as e:
            raise InvalidAdapter(f"SqlParticipant: not a database URL: {url!r} ({e})") from None
        if not isinstance(inbox, str) or not inbox.isidentifier():
            raise InvalidAdapter(f"SqlParticipant: inbox must be a plain table name, not {inbox!r}")
        if (
            isinstance(lock_timeout, bool)
            or not isinstance(lock_timeout, int | float)
            or not lock_timeout > 0
        ):
            raise InvalidAdapter(
                f"SqlParticipant: lock_timeout must be positive seconds, not {lock_timeout!r}"
            )
        self.lock_timeout = float(lock_timeout)
        self._inbox = sa.Table(
            inbox,
            sa.MetaData(),
            sa.Column("key", sa.String(400), primary_key=True),
            sa.Column("result", sa.Text, nullable=True),
        )
        self._lock = threading.Lock()
        self._engine: sa.Engine | None = None
        self._engine_pid = 0
        self._ready = False

    @property
    def target(self) -> str:
        return self._url._replace(password=None).render_as_string(hide_password=False)

    @property
    def engine(self) -> sa.Engine:
        """The participant's engine (created on first use; a forked child makes its own)."""
        with self._lock:
            if self._engine is None or self._engine_pid != os.getpid():
                self._engine = _engine(self._url, self.lock_timeout)
                self._engine_pid = os.getpid()
                self._ready = False
            return self._engine

    def __call__(self, ctx: StepContext, /, work: Work) -> Any:
        self._check(work)
        with recorded(ctx, self.kind, self.target):
            return self._run(ctx.idempotency_key, work)

    async def acall(self, ctx: StepContext, /, work: Work) -> Any:
        """As a plain call, on a worker thread. A transaction cannot be stopped from outside:
        cancelled (by a hedge), the call waits for it to end and answers as it does, so the
        call log says whether it committed."""
        return await run_to_end(self, ctx, work)

    def dispose(self) -> None:
        """Close the participant's pooled connections."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    # -- the transaction --------------------------------------------------------------------

    @staticmethod
    def _check(work: Any) -> None:
        if not callable(work):
            raise InvalidRequest(f"SqlParticipant: work must be a function of a connection, not {work!r}")

    def _run(self, key: str, work: Work) -> Any:
        try:
            engine = self.engine
            self._create_inbox(engine)
            with engine.begin() as conn:
                if not self._claim(conn, key):
                    return self._recorded(conn, key)
                result = work(conn)
                try:
                    text = json.dumps(to_json_value(result))
                except InvalidValue as e:
                    raise InvalidRequest(f"SqlParticipant: work returned a non-JSON value: {e}") from e
                conn.execute(self._inbox.update().where(self._inbox.c.key == key).values(result=text))
                return json.loads(text)
        except exc.DBAPIError as e:
            raise _translate(self.target, self._url.get_backend_name(), e) from e
        except exc.SQLAlchemyError as e:
            raise ParticipantRejected(f"{self.target}: {_first_line(e)}") from e

    def _claim(self, conn: sa.Connection, key: str) -> bool:
        """Insert the key's inbox row; ``False`` if a committed attempt already holds it.

        An attempt that raced us and has not committed yet holds the row's lock
        (PostgreSQL) or the write lock (SQLite): the insert waits for it.
        """
        name = conn.dialect.name
        values = {"key": key, "result": None}
        stmt: sa.Executable
        if name == "postgresql":
            stmt = postgresql.insert(self._inbox).values(values).on_conflict_do_nothing().returning(
                self._inbox.c.key
            )
        elif name == "sqlite":
            stmt = sqlite.insert(self._inbox).values(values).on_conflict_do_nothing().returning(
                self._inbox.c.key
            )
        else:
            try:
                with conn.begin_nested():
                    conn.execute(self._inbox.insert().values(values))
                return True
            except exc.IntegrityError:
                return False
        return conn.execute(stmt).first() is not None

    def _recorded(self, conn: sa.Connection, key: str) -> Any:
        text = conn.execute(sa.select(self._inbox.c.result).where(self._inbox.c.key == key)).scalar_one()
        return None if text is None else json.loads(text)

    def _create_inbox(self, engine: sa.Engine) -> None:
        if self._ready:
            return
        try:
            self._inbox.create(engine, checkfirst=True)
        except (exc.ProgrammingError, exc.IntegrityError, exc.OperationalError):
            # Another process created it between our check and our CREATE.
            if not sa.inspect(engine).has_table(self._inbox.name):
                raise
        self._ready = True


def _engine(url: sa.URL, lock_timeout: float) -> sa.Engine:
    backend = url.get_backend_name()
    if backend == "postgresql":
        options = f"-c lock_timeout={int(lock_timeout * 1000)}"
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"options": options})
    if backend != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": lock_timeout})

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we say BEGIN ourselves, below

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: sa.Connection) -> None:
        # Take the write lock at once: a deferred transaction that read the inbox
        # could not upgrade to write after a racing attempt committed.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


_SQLITE_TRANSIENT = ("locked", "busy", "unable to open database", "disk i/o error")


def _translate(target: str, backend: str, error: exc.DBAPIError) -> Exception:
    """A driver error as a retryable or a permanent participant error."""
    detail = _first_line(error.orig or error)
    message = f"{target}: {detail}"
    transient = error.connection_invalidated or isinstance(error, exc.OperationalError | exc.InterfaceError)
    if transient and backend == "sqlite" and not error.connection_invalidated:
        # sqlite3 reports bad SQL as OperationalError too: only lock and I/O trouble passes.
        transient = any(word in detail.lower() for word in _SQLITE_TRANSIENT)
    if transient:
        return ParticipantUnavailable(message)
    return ParticipantRejected(message)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

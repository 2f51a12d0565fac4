"""Faults injected from inside a process: SIGKILL itself at a chosen moment.

Nothing here touches the library: the commit hooks are SQLAlchemy event
listeners on the store's engine, as any user of the engine could install, and
on SQLite the driver's own statement trace.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

__all__ = ["die", "due", "kill_at_append"]

_APPEND = "INSERT INTO SAGA_EVENTS"


def die() -> None:
    """SIGKILL this process: no cleanup, no flush, no atexit, as a power cut would."""
    os.kill(os.getpid(), signal.SIGKILL)


_armed = False
"""A kill is due at the next thing the process does (set once a commit has been seen out)."""


def due() -> None:
    """Die here if a kill is due: a step calls it before its effect, so that a process told to
    die "after a commit returned" dies before the step that commit started can act."""
    if _armed:
        die()


def kill_at_append(engine: sa.Engine, n: int, *, after: bool) -> None:
    """SIGKILL this process at the ``n``-th commit that writes events (1-based).

    ``after=False``: just before the DBAPI commit (the transaction is lost); for a statement
    run in autocommit (its own transaction), just before it is sent.
    ``after=True``: once the commit has returned, before the caller acts on it: on
    PostgreSQL when the statement in autocommit has returned, or when the connection of an
    explicit transaction goes back to the pool; on SQLite, whose store keeps its own
    connections out of the pool, at whichever comes first of the next statement, the start
    of the next step, and the caller's own call of :func:`due` once it has the result.
    Commits that write no events (lease renewals, releases) are not counted;
    one commit that writes the events of several sagas (group commit) counts once.
    """
    count = 0

    @event.listens_for(engine, "before_cursor_execute")
    def _mark(conn: sa.Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal count
        if _APPEND not in " ".join(statement.upper().split()):  # plain or inside a WITH
            return
        if not getattr(conn.connection.driver_connection, "autocommit", False):
            conn.info["appending"] = True  # counted at the transaction's commit
            return
        count += 1  # the statement commits itself
        if count == n:
            if not after:
                die()
            conn.info["die_after_statement"] = True

    @event.listens_for(engine, "after_cursor_execute")
    def _ran(conn: sa.Connection, *_args: Any) -> None:
        if conn.info.pop("die_after_statement", False):
            die()

    @event.listens_for(engine, "rollback")
    def _rolled_back(conn: sa.Connection) -> None:
        conn.info.pop("appending", None)

    @event.listens_for(engine, "commit")
    def _commit(conn: sa.Connection) -> None:
        nonlocal count
        if not conn.info.pop("appending", False):
            return
        count += 1
        if count != n:
            return
        if not after:
            die()
        conn.info["die_at_checkin"] = True

    if engine.dialect.name == "sqlite":
        # The SQLite store writes through sqlite3 itself: watch its statements there.
        @event.listens_for(engine, "connect")
        def _trace(dbapi_conn: Any, record: Any) -> None:
            def seen(sql: str) -> None:
                nonlocal count
                global _armed  # noqa: PLW0603 - one kill per process
                due()
                head = " ".join(sql.upper().split())
                if _APPEND in head:
                    record.info["appending"] = True
                elif head.startswith("ROLLBACK"):
                    record.info.pop("appending", None)
                elif head.startswith("COMMIT") and record.info.pop("appending", False):
                    count += 1  # (the trace runs as the COMMIT starts, before it takes effect)
                    if count == n:
                        if not after:
                            die()
                        _armed = True

            dbapi_conn.set_trace_callback(seen)

        engine.dispose()  # connections opened before the hooks reopen traced

    @event.listens_for(engine.pool, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        if record is not None and record.info.pop("die_at_checkin", False):
            die()

"""A participant: the outside service a saga's steps change, idempotent on its key.

Each forward step reserves something: one row in ``ledger_effects`` keyed by
the step's idempotency key (and unique per saga and step). Doing it again
with the same key changes nothing, as a real service keyed by idempotency key
would. Undoing marks the row ``undone``; undoing a reservation that never
arrived leaves a ``void`` tombstone, so a late forward call (from a worker
that was paused past its lease) cannot apply it afterwards.

``ledger_applied`` gets one row each time a call actually changed the
ledger: that is what "the effect happened exactly once" is checked against.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

__all__ = ["Effect", "Ledger"]

_DDL = [
    """CREATE TABLE IF NOT EXISTS ledger_effects (
        key VARCHAR(300) PRIMARY KEY,
        saga_id VARCHAR(200) NOT NULL,
        step VARCHAR(128) NOT NULL,
        state VARCHAR(8) NOT NULL,
        UNIQUE (saga_id, step)
    )""",
    """CREATE TABLE IF NOT EXISTS ledger_applied (
        key VARCHAR(300) NOT NULL,
        saga_id VARCHAR(200) NOT NULL,
        step VARCHAR(128) NOT NULL,
        action VARCHAR(8) NOT NULL
    )""",
]


@dataclass(frozen=True, slots=True)
class Effect:
    """One reservation as the participant sees it."""

    saga_id: str
    step: str
    state: str  # "done", "undone" or "void" (undone before it ever arrived)
    done: int  # how many calls applied it
    undone: int  # how many calls undid it


class Ledger:
    """The participant's database (a SQLite file or a PostgreSQL database)."""

    def __init__(self, url: str) -> None:
        self.url = url
        u = sa.make_url(url)
        if u.get_backend_name() == "sqlite":
            self.engine = sa.create_engine(u, connect_args={"timeout": 30.0})

            @event.listens_for(self.engine, "connect")
            def _configure(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()
        else:
            self.engine = sa.create_engine(u, pool_size=4, max_overflow=8)

    def create_tables(self) -> None:
        """Create the participant's tables (idempotent)."""
        with self.engine.begin() as conn:
            for ddl in _DDL:
                conn.exec_driver_sql(ddl)

    def do(self, key: str, saga_id: str, step: str) -> bool:
        """Apply the reservation ``key``; ``False`` if it was already applied (or voided)."""
        with self.engine.begin() as conn:
            inserted = conn.execute(
                sa.text(
                    "INSERT INTO ledger_effects (key, saga_id, step, state) "
                    "VALUES (:key, :saga_id, :step, 'done') ON CONFLICT DO NOTHING"
                ),
                {"key": key, "saga_id": saga_id, "step": step},
            ).rowcount
            if inserted:
                self._applied(conn, key, saga_id, step, "do")
        return bool(inserted)

    def undo(self, key: str, saga_id: str, step: str) -> bool:
        """Undo the reservation of ``saga_id``'s ``step``; tolerates "nothing to undo".

        ``key`` is the compensation's own idempotency key (recorded, not used
        to find the reservation: the step's name and saga do that).
        """
        with self.engine.begin() as conn:
            undone = conn.execute(
                sa.text(
                    "UPDATE ledger_effects SET state = 'undone' "
                    "WHERE saga_id = :saga_id AND step = :step AND state = 'done'"
                ),
                {"saga_id": saga_id, "step": step},
            ).rowcount
            if undone:
                self._applied(conn, key, saga_id, step, "undo")
            else:
                conn.execute(
                    sa.text(
                        "INSERT INTO ledger_effects (key, saga_id, step, state) "
                        "VALUES (:key, :saga_id, :step, 'void') ON CONFLICT DO NOTHING"
                    ),
                    {"key": key, "saga_id": saga_id, "step": step},
                )
        return bool(undone)

    @staticmethod
    def _applied(conn: sa.Connection, key: str, saga_id: str, step: str, action: str) -> None:
        conn.execute(
            sa.text(
                "INSERT INTO ledger_applied (key, saga_id, step, action) "
                "VALUES (:key, :saga_id, :step, :action)"
            ),
            {"key": key, "saga_id": saga_id, "step": step, "action": action},
        )

    def effects(self) -> dict[tuple[str, str], Effect]:
        """Every reservation by (saga id, step), with how often it was applied and undone."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT saga_id, step, state FROM ledger_effects")).all()
            applied = conn.execute(sa.text("SELECT saga_id, step, action FROM ledger_applied")).all()
        counts = Counter((r.saga_id, r.step, r.action) for r in applied)
        out = {
            (r.saga_id, r.step): Effect(
                r.saga_id, r.step, r.state,
                counts[(r.saga_id, r.step, "do")], counts[(r.saga_id, r.step, "undo")],
            )
            for r in rows
        }
        for saga_id, step, _action in counts:
            if (saga_id, step) not in out:  # applied without a row: impossible, but report it
                out[(saga_id, step)] = Effect(
                    saga_id, step, "missing",
                    counts[(saga_id, step, "do")], counts[(saga_id, step, "undo")],
                )
        return out

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

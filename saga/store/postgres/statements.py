"""PostgreSQL's own SQL: claiming with ``SKIP LOCKED``, batched appends, inserting events from
one JSON document, notifying. The predicates inside come from the shared expressions
(:mod:`saga.store.statements`), compiled once, so they are written in one place only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from saga.store.appends import Append
from saga.store.hashing import HASH_VERSION
from saga.store.postgres.notify import CHANNEL
from saga.store.rules import dumps
from saga.store.statements import Epoch, is_due, lease_open, next_wake

__all__ = [
    "BATCH_APPEND", "CLAIM", "CLAIM_LOADED", "CREATE_WITH_EVENTS", "CREATE_WITH_EVENTS_AND_NOTIFY",
    "NOTIFY", "WRITING_EVENTS",
    "events_document", "sagas_document",
]

_DIALECT = postgresql.dialect(paramstyle="named")  # type: ignore[no-untyped-call]


def _sql(expr: sa.ColumnElement[Any]) -> str:
    """A shared Core expression as PostgreSQL SQL, with ``:name`` parameters for ``sa.text``."""
    return str(expr.compile(dialect=_DIALECT))


_v = sa.table("v", sa.column("owner"), sa.column("now"), sa.column("wake_at"))

_EVENT_COLUMNS = f"""
INSERT INTO saga_events (saga_id, seq, type, schema_version, data, recorded_at, writer, hash,
                         hash_version)
SELECT e.saga_id, e.seq, e.type, e.schema_version, e.data, e.recorded_at, e.writer, e.hash,
       {HASH_VERSION}
FROM ROWS FROM (json_to_recordset(CAST(:events AS json)) AS (
    saga_id text, seq integer, type text, schema_version smallint, data json,
    recorded_at float8, writer text, hash text
)) WITH ORDINALITY AS e(saga_id, seq, type, schema_version, data, recorded_at, writer, hash, n)
"""


def _insert_events(accepted: str) -> str:
    """Insert the events of the JSON array ``:events`` in order, for the sagas the CTE
    ``accepted`` returns (each with the ``recorded_at`` its hash covers)."""
    return _EVENT_COLUMNS + f"JOIN {accepted} ON {accepted}.saga_id = e.saga_id\nORDER BY e.n\n"


# Claiming in one statement, built once: the ids come as array parameters, so that the SQL
# is the same whatever their number (compiled once, then a prepared statement). Rows
# another worker is claiming (or appending to) are skipped, not waited for; a row updated
# meanwhile is re-checked against the WHERE clause.
_CLAIMED = f"""
WITH picked AS (
    SELECT saga_id, wake_at FROM sagas
    WHERE {_sql(is_due(sa.bindparam("now")))}
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
CLAIM = sa.text(_CLAIMED + "SELECT saga_id FROM claimed ORDER BY wake_at, saga_id")
# ... and with the events of every saga it took, which the worker would otherwise load next,
# one round trip each. (They are read as of the statement's start: ``last_seq``, from the row
# as locked, tells whether an append committed in between.)
CLAIM_LOADED = sa.text(_CLAIMED + """
SELECT c.saga_id, c.last_seq, e.position, e.seq, e.type, e.schema_version, e.data, e.recorded_at, e.writer,
       e.hash
FROM claimed AS c LEFT JOIN saga_events AS e ON e.saga_id = c.saga_id
ORDER BY c.wake_at, c.saga_id, e.seq
""")

NOTIFY = sa.text("SELECT pg_notify(:channel, '')").bindparams(channel=CHANNEL)

# A new saga's row and its first events in one statement (one round trip less than two).
_CREATED = """
WITH created AS (
    INSERT INTO sagas (saga_id, name, version, status, last_seq, created_at, updated_at,
                       wake_at, lease_owner, lease_expires_at, failed_step)
    VALUES (:saga_id, :name, :version, :status, :last_seq, :created_at, :updated_at,
            :wake_at, :lease_owner, :lease_expires_at, :failed_step)
    RETURNING saga_id
)"""
CREATE_WITH_EVENTS = sa.text(_CREATED + "\n" + _insert_events("created"))
CREATE_WITH_EVENTS_AND_NOTIFY = sa.text(
    _CREATED + ", inserted AS (\n" + _insert_events("created") + ")\n"
    f"SELECT pg_notify('{CHANNEL}', '') FROM created"
)
"""... and, for a saga that is due at once with no one holding it, the notification too."""

BATCH_APPEND = sa.text(f"""
WITH v AS (
    SELECT * FROM json_to_recordset(CAST(:sagas AS json)) AS v(
        saga_id text, expected integer, last_seq integer, status text, wake_at float8,
        now float8, fenced boolean, owner text, lease_owner text, lease_until float8,
        failed_step text)
), won AS (
    UPDATE sagas SET
        last_seq = v.last_seq,
        status = v.status,
        -- a wake-up already due stays as it was: the row keeps its index entries (a HOT update)
        wake_at = {_sql(next_wake(_v.c.wake_at, _v.c.now))},
        updated_at = v.now,
        failed_step = COALESCE(v.failed_step, sagas.failed_step),
        lease_owner = CASE WHEN v.fenced THEN v.lease_owner ELSE sagas.lease_owner END,
        lease_expires_at = CASE WHEN v.fenced THEN v.lease_until ELSE sagas.lease_expires_at END
    FROM v
    WHERE sagas.saga_id = ANY(CAST(:ids AS text[]))  -- lets the planner use the primary key
      AND sagas.saga_id = v.saga_id
      AND sagas.last_seq = v.expected
      AND (NOT v.fenced OR {_sql(lease_open(_v.c.owner, _v.c.now))})
    RETURNING sagas.saga_id
), inserted AS (
    {_insert_events("won")})
SELECT saga_id FROM won
""")
"""Every append of a batch in one statement: each saga's row checks its own ``seq`` and
lease, with the same fence as the single append's ``UPDATE``, and only the sagas that pass
get their events inserted; the ids returned are those whose append won."""


def events_document(rows: Iterable[dict[str, Any]]) -> str:
    """Event rows as the JSON array ``:events`` (each row's ``data`` is JSON text already,
    spliced in as is rather than parsed and serialised again)."""
    return "[" + ",".join(
        dumps({k: v for k, v in r.items() if k != "data"})[:-1] + ',"data":' + r["data"] + "}"
        for r in rows
    ) + "]"


def sagas_document(appends: Iterable[Append]) -> str:
    """The ``:sagas`` document of :data:`BATCH_APPEND`."""
    return dumps([{
        "saga_id": a.saga_id, "expected": a.expected,
        "last_seq": a.expected + len(a.rows), "status": a.status,
        "wake_at": a.wake_at, "now": a.now, "fenced": a.owner is not None,
        "owner": a.owner,
        "lease_owner": a.owner if a.lease_until is not None else None,
        "lease_until": a.lease_until, "failed_step": a.failed_step,
    } for a in appends])


WRITING_EVENTS = sa.text(
    "SELECT DISTINCT l.virtualtransaction FROM pg_locks l "
    "WHERE l.relation = CAST('saga_events' AS regclass) AND l.mode = 'RowExclusiveLock' "
    "AND l.pid <> pg_backend_pid()"
)
"""The transactions, other than ours, writing events now (a head waits for them to end)."""


@compiles(Epoch, "postgresql")
def _epoch(element: Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM CAST({compiler.process(element.clauses, **kw)} AS TIMESTAMPTZ))"

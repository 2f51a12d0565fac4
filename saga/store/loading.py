"""Writing many whole sagas at once: an import, or a large log for a benchmark.

:func:`write_sagas` fills the tables as the appends would have (each event
hashed into its saga's chain, ``sagas.failed_step`` kept; the attempts
projection catches up when it is next read), with multi-row inserts in a few large transactions instead of one
transaction per append. It takes the database's write lock for each batch;
it is not for a log that workers are writing at the same time as the same sagas.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from saga import events as ev
from saga.errors import InvalidInput
from saga.state import SagaStatus
from saga.store.base import check_saga_id
from saga.store.chain import chain, failed_step_of
from saga.store.hashing import HASH_VERSION
from saga.store.rules import encoded
from saga.store.schema import events, sagas
from saga.store.sql import SqlEventStore
from saga.store.transient import translated

__all__ = ["BulkSaga", "write_sagas"]

_TEXT = sa.bindparam("data", type_=sa.Text)
_INSERT_EVENTS = {
    "postgresql": events.insert().values(data=sa.cast(_TEXT, postgresql.JSON())),
    "sqlite": events.insert().values(data=_TEXT),
}
"""Each event's data written as the JSON text its hash covers (not encoded again)."""


@dataclass(frozen=True, slots=True)
class BulkSaga:
    """One whole saga to write: its index row's fields and every event, from ``seq`` 1.

    Each event is recorded at its own ``at`` time.
    """

    saga_id: str
    name: str
    version: int
    status: SagaStatus
    events: Sequence[ev.Event]
    wake_at: datetime | None = None


@translated
def _flush(store: SqlEventStore, saga_rows: list[dict[str, Any]], event_rows: list[dict[str, Any]]
           ) -> None:
    with store._write() as conn:
        conn.execute(sagas.insert(), saga_rows)
        conn.execute(_INSERT_EVENTS[conn.dialect.name], event_rows)


def write_sagas(store: SqlEventStore, items: Iterable[BulkSaga], *, batch: int = 20_000
                ) -> tuple[int, int]:
    """Write every saga of ``items`` (new ids only), about ``batch`` events per transaction;
    returns ``(sagas, events)`` written. Raises ``InvalidInput`` for a saga without events
    and ``StoreError`` (nothing of that batch written) if an id exists already."""
    saga_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    n_sagas = n_events = 0
    for item in items:
        check_saga_id(item.saga_id)
        if not item.events:
            raise InvalidInput(f"saga {item.saga_id} has no events to write")
        rows: list[dict[str, Any]] = []
        for seq, e in enumerate(item.events, 1):
            _, text = encoded(item.saga_id, e, store.max_payload)
            rows.append({"saga_id": item.saga_id, "seq": seq, "type": e.type_name(),
                         "schema_version": e.schema_version, "data": text,
                         "recorded_at": e.at.timestamp(), "writer": None,
                         "hash_version": HASH_VERSION})
        chain(rows, None)
        first, last = item.events[0].at.timestamp(), item.events[-1].at.timestamp()
        saga_rows.append({
            "saga_id": item.saga_id, "name": item.name, "version": item.version,
            "status": item.status.value, "last_seq": len(rows), "created_at": first,
            "updated_at": last, "wake_at": None if item.wake_at is None else item.wake_at.timestamp(),
            "lease_owner": None, "lease_expires_at": None, "failed_step": failed_step_of(item.events),
        })
        event_rows += rows
        if len(event_rows) >= batch:
            _flush(store, saga_rows, event_rows)
            n_sagas, n_events = n_sagas + len(saga_rows), n_events + len(event_rows)
            saga_rows, event_rows = [], []
    if saga_rows:
        _flush(store, saga_rows, event_rows)
        n_sagas, n_events = n_sagas + len(saga_rows), n_events + len(event_rows)
    return n_sagas, n_events

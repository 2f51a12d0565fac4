"""What a store hands back about one saga: its events as recorded, and its row in the index."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from saga import events as ev
from saga.state import SagaStatus

__all__ = ["SagaSummary", "StoredEvent"]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the log: an event as recorded, with the database's timestamp."""

    saga_id: str
    seq: int
    type: str
    data: dict[str, Any]
    recorded_at: datetime
    writer: str | None = None
    position: int | None = None
    schema_version: int = 1
    hash: str | None = None
    """SHA-256 chaining this event to the previous one of its saga (see :mod:`saga.store.hashing`)."""
    _event: ev.Event | None = field(default=None, repr=False, compare=False)

    @property
    def event(self) -> ev.Event:
        """The event as its pydantic model (validated)."""
        if self._event is not None:
            return self._event
        return ev.parse(self.type, self.data, self.schema_version)

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object: ``seq``, ``type``, ``data``, ``recorded_at`` and more."""
        return {
            "saga_id": self.saga_id,
            "seq": self.seq,
            "type": self.type,
            "data": self.data,
            "recorded_at": self.recorded_at.isoformat(),
            "writer": self.writer,
        }


@dataclass(frozen=True, slots=True)
class SagaSummary:
    """A saga's row in the index table (rebuildable from its events)."""

    saga_id: str
    name: str
    version: int
    status: SagaStatus
    last_seq: int
    created_at: datetime
    updated_at: datetime
    wake_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None

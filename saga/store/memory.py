"""The in-memory backend: one log per store object, gone when the process ends.

For tests and simulation: it keeps the same contract as the databases (the
``seq`` and lease fence, the payload limit, atomic claims, the hash chain,
the read side) under one lock, and finds due sagas through a heap keyed by
when each may next be due, so that claiming among thousands of sagas costs
little.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from saga import events as ev
from saga.errors import ConcurrencyError, InvalidInput, LeaseHeld, SagaNotFound
from saga.secrets.keys import KeyRing
from saga.state import SagaStatus
from saga.store.base import (
    DEFAULT_MAX_PAYLOAD,
    EventStore,
    SagaSummary,
    SchemaMode,
    StoredEvent,
    check_saga_id,
)
from saga.store.hashing import stored_event_hash
from saga.store.rules import check_page, encoded, wake_kept
from saga.store.scanning import ScanReads

__all__ = ["MemoryEventStore"]


@dataclass(slots=True)
class _Saga:
    """A saga's index row and its events."""

    name: str
    version: int
    status: SagaStatus
    created_at: datetime
    updated_at: datetime
    wake_at: float | None
    lease_owner: str | None
    lease_until: float | None
    events: list[StoredEvent] = field(default_factory=list)
    stamp: int = 0  # changes whenever what decides "due" changes: older heap entries are stale

    def lease_free(self, now: float) -> bool:
        return self.lease_owner is None or (self.lease_until is not None and self.lease_until < now)

    def summary(self, saga_id: str) -> SagaSummary:
        return SagaSummary(
            saga_id=saga_id, name=self.name, version=self.version, status=self.status,
            last_seq=len(self.events), created_at=self.created_at, updated_at=self.updated_at,
            wake_at=None if self.wake_at is None else datetime.fromtimestamp(self.wake_at, UTC),
            lease_owner=self.lease_owner,
            lease_expires_at=(None if self.lease_until is None
                              else datetime.fromtimestamp(self.lease_until, UTC)),
        )


class MemoryEventStore(ScanReads, EventStore):
    """An event store in this process's memory (``memory://``); thread-safe.

    Its read side reads every saga's events (:class:`~saga.store.scanning.ScanReads`). Opened
    with ``schema="require"`` (as reading commands open a store) it refuses: a new memory
    store holds no saga log, the log it would read lives in another process's memory.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        schema: SchemaMode = "create",
        encryption_key: str | KeyRing | None = None,
    ) -> None:
        super().__init__(url, max_payload=max_payload, schema=schema, encryption_key=encryption_key)
        if url.partition("://")[2] not in ("", "/"):
            raise InvalidInput("a memory store's URL is just memory://")
        if schema == "require":
            raise SagaNotFound("no saga log in memory://: a memory store's log lives in the "
                               "memory of the process that writes it, and a reader cannot see it")
        self._lock = threading.Lock()
        self._sagas: dict[str, _Saga] = {}
        self._heap: list[tuple[float, int, str, int]] = []
        self._tie = itertools.count()
        self._position = itertools.count(1)

    def upgrade(self) -> str:
        return "memory"  # nothing to migrate

    # -- helpers (called with the lock held) ------------------------------------------------

    def _get(self, saga_id: str) -> _Saga:
        saga = self._sagas.get(saga_id)
        if saga is None:
            raise SagaNotFound(f"no saga has id {saga_id!r}")
        return saga

    def _schedule(self, saga_id: str, saga: _Saga) -> None:
        saga.stamp += 1
        if saga.status.is_active and saga.wake_at is not None:
            key = saga.wake_at
            if saga.lease_owner is not None and saga.lease_until is not None:
                key = max(key, saga.lease_until)
            heapq.heappush(self._heap, (key, next(self._tie), saga_id, saga.stamp))

    def _stored(self, saga_id: str, first_seq: int, batch: Sequence[ev.Event],
                writer: str | None) -> list[tuple[StoredEvent, str]]:
        """Each event as stored, with its data's text (what its hash covers)."""
        out = []
        for i, e in enumerate(batch):
            data, text = encoded(saga_id, e, self.max_payload)
            out.append((StoredEvent(
                saga_id=saga_id, seq=first_seq + i, type=e.type_name(), data=data,
                recorded_at=datetime.now(UTC), writer=writer, schema_version=e.schema_version,
                _event=e,
            ), text))
        return out

    def _numbered(self, events: list[tuple[StoredEvent, str]], previous: str | None
                  ) -> list[StoredEvent]:
        # positions are given under the lock, so they grow in commit order as in a database;
        # hashes chain from the saga's last event (``previous``), as in a database
        out = []
        for s, text in events:
            previous = stored_event_hash(s.saga_id, s.seq, s.type, s.schema_version, text,
                                         previous, s.recorded_at.timestamp())
            out.append(StoredEvent(saga_id=s.saga_id, seq=s.seq, type=s.type, data=s.data,
                                   recorded_at=s.recorded_at, writer=s.writer,
                                   position=next(self._position),
                                   schema_version=s.schema_version, hash=previous,
                                   _event=s.event))
        return out

    # -- writing ----------------------------------------------------------------------------

    def create(
        self,
        saga_id: str,
        events: Sequence[ev.Event],
        *,
        name: str,
        version: int,
        status: SagaStatus,
        wake_at: datetime | None,
        now: datetime,
        owner: str | None = None,
        lease_until: datetime | None = None,
    ) -> bool:
        check_saga_id(saga_id)
        stored = self._stored(saga_id, 1, events, owner)
        with self._lock:
            if saga_id in self._sagas:
                return False
            saga = _Saga(
                name=name, version=version, status=status, created_at=now, updated_at=now,
                wake_at=None if wake_at is None else wake_at.timestamp(),
                lease_owner=owner if lease_until is not None else None,
                lease_until=None if lease_until is None else lease_until.timestamp(),
                events=self._numbered(stored, None),
            )
            self._sagas[saga_id] = saga
            self._schedule(saga_id, saga)
        return True

    def append(
        self,
        saga_id: str,
        expected_seq: int,
        events: Sequence[ev.Event],
        *,
        status: SagaStatus,
        wake_at: datetime | None,
        now: datetime,
        owner: str | None = None,
        lease_until: datetime | None = None,
    ) -> None:
        stored = self._stored(saga_id, expected_seq + 1, events, owner)
        ts = now.timestamp()
        with self._lock:
            saga = self._get(saga_id)
            if len(saga.events) != expected_seq:
                raise ConcurrencyError(
                    f"saga {saga_id}: expected to append after seq {expected_seq}, "
                    f"but the log is at {len(saga.events)}"
                )
            if owner is not None:
                if not (saga.lease_free(ts) or saga.lease_owner == owner):
                    until = datetime.fromtimestamp(saga.lease_until or 0.0, UTC)
                    raise LeaseHeld(f"saga {saga_id} is leased to {saga.lease_owner} until "
                                    f"{until.isoformat()}")
                saga.lease_owner = owner if lease_until is not None else None
                saga.lease_until = None if lease_until is None else lease_until.timestamp()
            saga.events.extend(self._numbered(stored, saga.events[-1].hash if saga.events else None))
            saga.status = status
            new_wake = None if wake_at is None else wake_at.timestamp()
            if not wake_kept(saga.wake_at, new_wake, ts):
                saga.wake_at = new_wake
            saga.updated_at = now
            self._schedule(saga_id, saga)

    def renew(self, owner: str, saga_ids: Iterable[str], *, until: datetime) -> set[str]:
        held = set()
        with self._lock:
            for saga_id in saga_ids:
                saga = self._sagas.get(saga_id)
                if saga is not None and saga.lease_owner == owner:
                    saga.lease_until = until.timestamp()
                    held.add(saga_id)
        return held

    def release(self, owner: str, saga_id: str) -> None:
        with self._lock:
            saga = self._sagas.get(saga_id)
            if saga is not None and saga.lease_owner == owner:
                saga.lease_owner = saga.lease_until = None
                self._schedule(saga_id, saga)

    # -- reading ----------------------------------------------------------------------------

    def load(self, saga_id: str, *, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        check_page(after, limit)
        with self._lock:
            found = self._get(saga_id).events
            return found[after:] if limit is None else found[after:after + limit]

    def summary(self, saga_id: str) -> SagaSummary:
        with self._lock:
            return self._get(saga_id).summary(saga_id)

    def find(
        self,
        *,
        status: SagaStatus | str | None = None,
        name: str | None = None,
        limit: int = 50,
    ) -> list[SagaSummary]:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput(f"limit must be a positive whole number, got {limit!r}")
        wanted: SagaStatus | None = None
        if status is not None:
            try:
                wanted = SagaStatus(status)
            except ValueError:
                choices = ", ".join(s.value for s in SagaStatus)
                raise InvalidInput(f"unknown status {status!r}; choose from {choices}") from None
        with self._lock:
            rows = [s.summary(i) for i, s in self._sagas.items()
                    if (wanted is None or s.status is wanted) and (name is None or s.name == name)]
        rows.sort(key=lambda r: r.saga_id)
        rows.sort(key=lambda r: r.updated_at, reverse=True)
        return rows[:limit]

    def _due(self, ts: float, names: set[str] | None, exclude: set[str]) -> list[tuple[float, str]]:
        return sorted(
            (s.wake_at, i) for i, s in self._sagas.items()
            if s.status.is_active and s.wake_at is not None and s.wake_at <= ts
            and s.lease_free(ts) and (names is None or s.name in names) and i not in exclude
        )

    def due(self, now: datetime, *, names: Iterable[str] | None = None, limit: int = 100
            ) -> list[str]:
        with self._lock:
            due = self._due(now.timestamp(), None if names is None else set(names), set())
        return [i for _, i in due[:limit]]

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
        ts = now.timestamp()
        wanted = None if names is None else set(names)
        skip = set(exclude)
        picked: list[tuple[float, str]] = []
        keep: list[tuple[float, int, str, int]] = []
        with self._lock:
            heap = self._heap
            while heap and heap[0][0] <= ts and len(picked) < limit:
                entry = heapq.heappop(heap)
                _, _, saga_id, stamp = entry
                saga = self._sagas[saga_id]
                if stamp != saga.stamp:
                    continue  # superseded by a later change
                if not saga.lease_free(ts):
                    # held: it cannot be due before the lease runs out (renewals move that on)
                    keep.append((max(entry[0], saga.lease_until or ts), next(self._tie),
                                 saga_id, stamp))
                elif saga_id in skip or (wanted is not None and saga.name not in wanted):
                    keep.append(entry)
                else:
                    assert saga.wake_at is not None
                    picked.append((saga.wake_at, saga_id))
            for entry in keep:
                heapq.heappush(heap, entry)
            picked.sort()
            for _, saga_id in picked:
                saga = self._sagas[saga_id]
                saga.lease_owner, saga.lease_until = owner, until.timestamp()
                self._schedule(saga_id, saga)
        return [i for _, i in picked]

    def next_wake(self, *, names: Iterable[str] | None = None) -> datetime | None:
        wanted = None if names is None else set(names)
        with self._lock:
            times = [
                max(s.wake_at, s.lease_until) if s.lease_until is not None else s.wake_at
                for s in self._sagas.values()
                if s.status.is_active and s.wake_at is not None
                and (wanted is None or s.name in wanted)
            ]
        return None if not times else datetime.fromtimestamp(min(times), UTC)

    def close(self) -> None:
        """Nothing to release (the log lives as long as this object)."""

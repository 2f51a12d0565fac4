"""The event store interface: what every backend promises."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from .. import events as ev
from ..clock import Clock, SystemClock, Wakeup
from ..errors import InvalidInput
from ..state import SagaStatus, SagaView, fold

__all__ = ["EventLog", "SagaSummary", "StoredEvent"]


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


class EventLog(ABC):
    """The interface of an event store: the append-only log of saga events, and
    the index of sagas beside it (:class:`saga.EventStore` implements it on SQL).

    Every method raises :class:`~saga.SagaError` subclasses only:
    :class:`~saga.SagaNotFound`, :class:`~saga.errors.ConcurrencyError`
    (and its :class:`~saga.errors.LeaseHeld`), :class:`~saga.errors.StoreError`
    wrapping a driver error.

    Appends are optimistic: the writer names the ``seq`` it expects to follow.
    A writer that holds (or claims) the saga's lease passes ``owner``; the
    append then also checks, in the same transaction, that no one else holds
    a live lease. That check is the fence against a worker that lost its
    lease without noticing.
    """

    # -- writing ----------------------------------------------------------------------------

    @abstractmethod
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
        """Record a new saga with its first events; ``False`` (writing nothing) if the id exists.

        With ``owner`` and ``lease_until`` the new saga is leased to ``owner``.
        """

    @abstractmethod
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
        """Append ``events`` after ``expected_seq`` in one transaction and update the index row.

        ``owner=None`` is an operator's append: no lease check, the lease is
        left alone. With ``owner`` the append fails with ``LeaseHeld`` if
        another owner's lease is live at ``now``; otherwise the lease becomes
        ``owner``'s until ``lease_until`` (``None``: released).
        Raises ``ConcurrencyError`` if the log no longer ends at ``expected_seq``.
        """

    @abstractmethod
    def renew(self, owner: str, saga_ids: Iterable[str], *, until: datetime, now: datetime) -> set[str]:
        """Extend ``owner``'s leases; returns the ids whose lease ``owner`` still held."""

    @abstractmethod
    def release(self, owner: str, saga_id: str) -> None:
        """Let go of ``owner``'s lease on a saga without appending (no-op if not held)."""

    # -- reading ----------------------------------------------------------------------------

    @abstractmethod
    def load(self, saga_id: str, *, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """The saga's events with ``seq > after``, by ``seq``, at most ``limit``;
        raises ``SagaNotFound`` if the saga does not exist."""

    @abstractmethod
    def summary(self, saga_id: str) -> SagaSummary:
        """The saga's index row; raises ``SagaNotFound``."""

    @abstractmethod
    def find(
        self,
        *,
        status: SagaStatus | str | None = None,
        name: str | None = None,
        limit: int = 50,
    ) -> list[SagaSummary]:
        """Sagas by status and name, most recently updated first."""

    @abstractmethod
    def due(self, now: datetime, *, names: Iterable[str] | None = None, limit: int = 100) -> list[str]:
        """Ids of active sagas due at ``now`` whose lease is free or expired, most overdue first."""

    @abstractmethod
    def next_wake(self, *, names: Iterable[str] | None = None) -> datetime | None:
        """The earliest time an active saga needs attention (``None``: none is waiting)."""

    @abstractmethod
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
        """Lease up to ``limit`` due sagas (as :meth:`due` finds them) to ``owner`` until ``until``.

        Atomic: two workers claiming at once never get the same saga (on
        PostgreSQL, rows another transaction is claiming are skipped, not
        waited for). Returns the ids claimed, most overdue first.
        """

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
        """:meth:`claim`, with each claimed saga's events where the backend reads them in the
        same round trip (``None``: the caller loads them with :meth:`load`).

        Events returned here are never older than the claim: a backend that
        cannot promise that returns ``None`` for the saga.
        """
        return [(sid, None) for sid in self.claim(
            owner, now, until=until, names=names, limit=limit, exclude=exclude
        )]

    def default_clock(self) -> Clock:
        """The clock a coordinator on this store uses unless given one: the database's time."""
        return SystemClock()

    def subscribe(self) -> Wakeup:
        """A wake-up set when a saga may have become due (never set if the backend cannot tell)."""
        return Wakeup()

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    # -- derived ----------------------------------------------------------------------------

    def history(self, saga_id: str) -> list[StoredEvent]:
        """A saga's events, oldest first (its audit trail)."""
        return self.load(saga_id)

    def get(self, saga_id: str) -> SagaView:
        """The saga's current state, folded from its events."""
        return fold(saga_id, (e.event for e in self.load(saga_id))).view()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_saga_id(saga_id: object) -> str:
    """Reject ids that are not short printable strings."""
    if not isinstance(saga_id, str) or not saga_id or len(saga_id) > 200 or not saga_id.isprintable():
        raise InvalidInput(f"a saga id must be a printable string of 1-200 characters, got {saga_id!r}")
    return saga_id

"""The event store interface: what every backend promises (writing and reading a saga's log,
finding work, and the read side over the whole log), and the constructor that opens one.

``EventStore(url)`` picks the backend for the URL's scheme through
:mod:`saga.store.registry`, which imports it by name: this module knows no
backend, and no backend module is imported until a URL asks for it.
"""

from __future__ import annotations

import sys
from abc import ABC
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

from saga import events as ev
from saga.clock import Clock, SystemClock, Wakeup
from saga.errors import InvalidInput
from saga.secrets.keys import KeyRing, resolve_key_ring
from saga.state import SagaStatus
from saga.store.reads import HEAD_WAIT, AuditReport, ExportRow, Head, SagaPage, Stats
from saga.store.records import SagaSummary, StoredEvent

__all__ = [
    "DEFAULT_MAX_PAYLOAD", "EventLog", "EventStore", "SagaSummary", "SchemaMode", "StoredEvent",
    "check_saga_id",
]

_F = TypeVar("_F")

if TYPE_CHECKING:
    # ``EventStore(url)`` instantiates the interface's class, whose ``__new__`` returns a
    # concrete backend; a type checker cannot see that, so to it the methods are not
    # abstract. At run time ABC still refuses a backend that leaves one out.
    def abstractmethod(fn: _F) -> _F:
        return fn
else:
    from abc import abstractmethod

SchemaMode = Literal["create", "require", "skip"]
"""What opening a store may do with the schema (see :class:`EventStore`)."""

DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""Bytes of JSON one event may take, unless the store is opened with another ``max_payload``."""


class EventLog(ABC):
    """The interface of an event store: the append-only log of saga events, and
    the index of sagas beside it (:class:`EventStore` opens one of ours by URL; an
    application may implement its own).

    Every method raises :class:`~saga.SagaError` subclasses only:
    :class:`~saga.SagaNotFound`, :class:`~saga.errors.ConcurrencyError`
    (and its :class:`~saga.errors.LeaseHeld`), :class:`~saga.errors.StoreError`
    wrapping a driver error.

    Appends are optimistic: the writer names the ``seq`` it expects to follow.
    A writer that holds (or claims) the saga's lease passes ``owner``; the
    append then also checks, in the same transaction, that no one else holds
    a live lease. That check is the fence against a worker that lost its
    lease without noticing.

    The read side answers questions about the whole log (:meth:`list_sagas`,
    :meth:`stats`, :meth:`export`, :meth:`verify`, :meth:`head`), with the
    values of :mod:`saga.store.reads`. A store with no query language of its
    own can take them from :class:`saga.store.scanning.ScanReads`, which reads
    every saga with :meth:`find` and :meth:`load`. The contract every store
    keeps is :class:`saga.testing.contract.EventLogContract`.
    """

    key_ring: KeyRing | None = None
    """The keys that seal and open secret fields (``None``: no key is set)."""

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
        raise NotImplementedError

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
        The saga is due from ``wake_at`` (``None``: not due), except that a
        ``wake_at`` already come by ``now`` leaves an earlier one as it is
        (:func:`~saga.store.rules.wake_kept`).
        Raises ``ConcurrencyError`` if the log no longer ends at ``expected_seq``.
        """
        raise NotImplementedError

    @abstractmethod
    def renew(self, owner: str, saga_ids: Iterable[str], *, until: datetime) -> set[str]:
        """Extend ``owner``'s leases; returns the ids whose lease ``owner`` still held."""
        raise NotImplementedError

    @abstractmethod
    def release(self, owner: str, saga_id: str) -> None:
        """Let go of ``owner``'s lease on a saga without appending (no-op if not held)."""
        raise NotImplementedError

    # -- reading ----------------------------------------------------------------------------

    @abstractmethod
    def load(self, saga_id: str, *, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """The saga's events with ``seq > after``, by ``seq``, at most ``limit`` of them.

        Raises ``SagaNotFound`` if the saga does not exist (a page past its
        last event is an empty list). Paging with ``after`` and ``limit``
        reads a long log in pieces of bounded size.
        """
        raise NotImplementedError

    @abstractmethod
    def summary(self, saga_id: str) -> SagaSummary:
        """The saga's index row; raises ``SagaNotFound``."""
        raise NotImplementedError

    @abstractmethod
    def find(
        self,
        *,
        status: SagaStatus | str | None = None,
        name: str | None = None,
        limit: int = 50,
    ) -> list[SagaSummary]:
        """Sagas by status and name, most recently updated first."""
        raise NotImplementedError

    @abstractmethod
    def due(self, now: datetime, *, names: Iterable[str] | None = None, limit: int = 100) -> list[str]:
        """Ids of active sagas due at ``now`` whose lease is free or expired, most overdue first."""
        raise NotImplementedError

    @abstractmethod
    def next_wake(self, *, names: Iterable[str] | None = None) -> datetime | None:
        """The earliest time an active saga needs attention (``None``: none is waiting)."""
        raise NotImplementedError

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
        raise NotImplementedError

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

    # -- the read side: the whole log ----------------------------------------------------------

    @abstractmethod
    def list_sagas(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        failed_step: str | None = None,
        error_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SagaPage:
        """Sagas newest first (by start, then id, descending), filtered by every filter given.

        ``failed_step``: the step the saga last failed for good (``StepFailed``);
        ``error_type``: some attempt of the saga (forward or compensation) failed
        with that error type; ``since``/``until``: started at or after ``since``
        and before ``until``. ``limit`` is 1 to :data:`~saga.store.reads.MAX_LIMIT`.
        ``cursor`` is the previous page's :attr:`~saga.store.reads.SagaPage.cursor`:
        the page goes on after its last saga, whatever was started since.
        Raises ``InvalidInput`` for an unknown status, a bad limit or cursor.
        """
        raise NotImplementedError

    @abstractmethod
    def stats(self, *, name: str | None = None, since: datetime | None = None,
              top: int = 10) -> Stats:
        """The statistics of the log (see :class:`~saga.store.reads.Stats`), read as of one moment.

        ``name`` keeps one saga name; ``since`` keeps sagas started at or after
        it and attempts started at or after it (both by the coordinator's
        clock); ``top``: how many of the commonest errors to give.
        """
        raise NotImplementedError

    @abstractmethod
    def export(self, *, since: datetime | None = None, batch: int = 1000) -> Iterator[ExportRow]:
        """Every event recorded at or after ``since``, in the order they were appended, read in
        batches of ``batch`` from one snapshot where the backend has them (memory stays flat
        whatever the size of the log). The store stays busy until the iterator is exhausted
        or closed."""
        raise NotImplementedError

    @abstractmethod
    def verify(self, saga_id: str | None = None, *, head: str | Head | None = None) -> AuditReport:
        """Recompute every hash chain (or ``saga_id``'s alone) and check each saga's index row,
        and, with ``head`` (from :meth:`head`, kept elsewhere, or its text), that no saga lost
        events the head covered, or was deleted whole, since.

        Raises ``InvalidInput`` for a head that is not one, or a head with a
        ``saga_id``, and ``SagaNotFound`` if ``saga_id`` has neither events nor
        an index row.
        """
        raise NotImplementedError

    @abstractmethod
    def head(self, *, wait: float = HEAD_WAIT) -> Head:
        """A :class:`~saga.store.audit.Head` of the log as it is: a digest over every saga's last
        event, and the position it covers. ``str(head)`` kept elsewhere and passed to
        :meth:`verify` later still holds once the log has grown.

        A backend whose appends may commit out of position order (PostgreSQL)
        waits, up to ``wait`` seconds and then raises ``StoreError``, for the
        appends in flight when it looked, so that the head covers every event
        up to its position.
        """
        raise NotImplementedError

    def catch_up(self, *, batches: int | None = None) -> int:
        """Bring the projections the read side keeps beside the log (``saga_attempts``) up to
        date with it, ``batches`` transactions at most (``None``: to the end); returns how
        many events were applied. The read side calls it before it reads them, and idle
        workers call it on their spare time. A store that derives everything from the events
        as it reads (the memory store) has nothing to do."""
        return 0

    def status_counts(self) -> dict[tuple[str, SagaStatus], int]:
        """How many sagas of each name are in each status, from the index (for gauges: it
        answers at once or fails, without retrying).

        This default reads every index row; a backend counts in one query.
        """
        counts: dict[tuple[str, SagaStatus], int] = {}
        for s in self.find(limit=sys.maxsize):
            counts[s.name, s.status] = counts.get((s.name, s.status), 0) + 1
        return counts

    def default_clock(self) -> Clock:
        """The clock a coordinator on this store uses unless given one: the database's time."""
        return SystemClock()

    def subscribe(self) -> Wakeup:
        """A wake-up set when a saga may have become due (never set if the backend cannot tell)."""
        return Wakeup()

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventStore(EventLog):
    """An event store opened by URL: ``EventStore(url)`` returns the backend the scheme names.

    ``sqlite:///file.db`` (one file, one machine), ``postgresql+psycopg://user@host/db``
    (many workers on many machines) and ``memory://`` (one log per store object,
    gone with the process; for tests and simulation). Every backend is an
    ``EventStore`` and keeps the same contract.

    ``schema`` says what opening may do. ``"create"`` (a writer's open, the
    default) creates the schema on an empty database. ``"require"`` writes
    nothing at all when opening (no schema, no file, no journal switch) and
    refuses a database that holds no saga log: what reading commands use.
    ``"skip"`` does not look (for :meth:`upgrade`). Either way a database whose
    schema is behind is refused until ``saga db upgrade`` runs, and one from a
    newer version of this library is refused as such.
    ``encryption_key`` (text as in ``$SAGA_ENCRYPTION_KEY``, which is read
    when it is not given) seals secret fields (see :mod:`saga.secrets.keys`).
    ``max_payload`` bounds the JSON size of one event (inputs, outputs,
    errors): larger ones raise :class:`~saga.PayloadTooLarge` before anything
    is written. Bad URLs and databases that cannot be opened raise
    :class:`~saga.InvalidInput` or :class:`~saga.StoreError` with one line.
    """

    def __new__(cls, url: str | None = None, *args: Any, **kwargs: Any) -> EventStore:
        backend: type[EventStore] = cls
        if cls is EventStore:
            from saga.store.registry import backend_for

            backend = backend_for(url, EventStore)
        return super().__new__(backend)

    url: str
    max_payload: int

    def __init__(
        self,
        url: str,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        schema: SchemaMode = "create",
        encryption_key: str | KeyRing | None = None,
    ) -> None:
        self.key_ring = resolve_key_ring(encryption_key)  # a malformed key fails before anything opens
        if isinstance(max_payload, bool) or not isinstance(max_payload, int) or max_payload < 1:
            raise InvalidInput(f"max_payload must be a positive number of bytes, got {max_payload!r}")
        if schema not in ("create", "require", "skip"):
            raise InvalidInput(f"schema must be 'create', 'require' or 'skip', not {schema!r}")
        self.url = url
        self.max_payload = max_payload
        self.schema = schema

    @abstractmethod
    def upgrade(self) -> str:
        """Apply every pending schema migration; returns the revision the database is now at."""
        raise NotImplementedError

    def __repr__(self) -> str:
        from saga.store.urls import redact

        return f"{type(self).__name__}({redact(self.url)!r})"


def check_saga_id(saga_id: object) -> str:
    """Reject ids that are not short printable strings."""
    if not isinstance(saga_id, str) or not saga_id or len(saga_id) > 200 or not saga_id.isprintable():
        raise InvalidInput(f"a saga id must be a printable string of 1-200 characters, got {saga_id!r}")
    return saga_id

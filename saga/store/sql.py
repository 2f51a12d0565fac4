"""The SQL event store on SQLAlchemy Core, shared by the SQLite and PostgreSQL backends.

A backend module supplies the engine, the database clock expression and its
transaction style; everything else (the append with its fence, claiming due
work, reading) is written once here.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from .. import events as ev
from ..errors import (
    ConcurrencyError,
    InvalidInput,
    LeaseHeld,
    PayloadTooLarge,
    SagaError,
    SagaNotFound,
    StoreError,
)
from ..state import SagaStatus
from .base import EventLog, SagaSummary, StoredEvent, check_saga_id
from .faults import first_line, retrying
from .group import BATCH_APPEND, GroupCommit, Pending
from .schema import HEAD, events, sagas

__all__ = ["EventStore", "from_ts", "to_ts"]

log = logging.getLogger("saga.store")

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MAX_PAYLOAD = 1024 * 1024

_ACTIVE = (SagaStatus.RUNNING.value, SagaStatus.COMPENSATING.value)

# The hot path's statements are built once, with bound parameters: building a
# Core statement and its cache key per call costs more than SQLite's commit.
_B = sa.bindparam
_CREATE = sagas.insert()
_APPEND = (
    sagas.update()
    .where(sagas.c.saga_id == _B("b_saga_id"), sagas.c.last_seq == _B("b_expected"))
    .values(last_seq=_B("b_last_seq"), status=_B("b_status"), wake_at=_B("b_wake_at"),
            updated_at=_B("b_now"))
)
_APPEND_FENCED = (
    _APPEND
    .where(sa.or_(
        sagas.c.lease_owner.is_(None),
        sagas.c.lease_owner == _B("b_owner"),
        sagas.c.lease_expires_at < _B("b_now"),
    ))
    .values(lease_owner=_B("b_lease_owner"), lease_expires_at=_B("b_lease_until"))
)
_LOAD = (
    sa.select(
        events.c.position, events.c.seq, events.c.type, events.c.schema_version,
        events.c.data, events.c.recorded_at, events.c.writer,
    )
    .where(events.c.saga_id == _B("b_saga_id"))
    .order_by(events.c.seq)
)
_SUMMARY = sa.select(sagas).where(sagas.c.saga_id == _B("b_saga_id"))


def to_ts(dt: datetime) -> float:
    """A timezone-aware datetime as epoch seconds (how the tables store time)."""
    return dt.timestamp()


def from_ts(ts: float) -> datetime:
    """Epoch seconds as a UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


def dumps(value: Any) -> str:
    """Compact JSON, as the data column stores it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def translated(fn: Callable[P, T]) -> Callable[P, T]:
    """Retry transient faults, then re-raise driver errors as ``StoreError`` (ours pass through).

    The method runs whole again after a transient fault (see
    :mod:`saga.store.faults`), so it must be one transaction, or safe to repeat.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        store = args[0]
        give_up_after = store.retry_for if isinstance(store, EventStore) else 0.0
        try:
            return retrying(lambda: fn(*args, **kwargs), give_up_after=give_up_after)
        except SagaError:
            raise
        except sa_exc.SQLAlchemyError as e:
            raise StoreError(f"{fn.__name__} failed: {first_line(e)}") from e

    return wrapper


@dataclass(frozen=True, slots=True)
class _Append:
    """One append as the store writes it: alone, or in a group commit's batch."""

    saga_id: str
    expected: int
    rows: list[dict[str, Any]]
    status: str
    wake_at: float | None
    now: float
    owner: str | None  # None: an operator's append, not fenced by the lease
    lease_until: float | None  # None: the owner lets go of the lease
    wake: bool  # the saga becomes due with no one holding it: notify idle workers

    def params(self) -> dict[str, Any]:
        """Parameters of ``_APPEND`` (or ``_APPEND_FENCED`` when there is an owner)."""
        params: dict[str, Any] = {
            "b_saga_id": self.saga_id,
            "b_expected": self.expected,
            "b_last_seq": self.expected + len(self.rows),
            "b_status": self.status,
            "b_wake_at": self.wake_at,
            "b_now": self.now,
        }
        if self.owner is not None:
            params["b_owner"] = self.owner
            params["b_lease_owner"] = self.owner if self.lease_until is not None else None
            params["b_lease_until"] = self.lease_until
        return params

    def batch_row(self) -> dict[str, Any]:
        """This append's row in :data:`~saga.store.group.BATCH_APPEND`'s ``sagas`` document."""
        return {
            "saga_id": self.saga_id, "expected": self.expected,
            "last_seq": self.expected + len(self.rows), "status": self.status,
            "wake_at": self.wake_at, "now": self.now, "fenced": self.owner is not None,
            "owner": self.owner,
            "lease_owner": self.owner if self.lease_until is not None else None,
            "lease_until": self.lease_until,
        }


class EventStore(EventLog):
    """The saga event log in a SQL database, through SQLAlchemy Core.

    ``EventStore(url)`` opens the database the URL names
    (``sqlite:///file.db`` or ``postgresql+psycopg://user@host/db``) and
    creates the schema on an empty one; a database whose schema is behind is
    refused until ``saga db upgrade`` runs. ``max_payload`` bounds the JSON
    size of one event (inputs, outputs, errors): larger ones raise
    :class:`~saga.PayloadTooLarge` before anything is written. Each backend
    module (``sqlite``, ``postgres``) subclasses it with its engine, clock
    and locking; ``EventStore(url)`` returns the right one.
    """

    def __new__(cls, url: str | None = None, *args: Any, **kwargs: Any) -> EventStore:
        backend: type[EventStore] = cls
        if cls is EventStore:
            from .factory import backend_for

            backend = backend_for(url)
        return super().__new__(backend)

    url: str
    engine: sa.Engine
    max_payload: int

    #: Seconds a transient database fault (dropped connection, server restart,
    #: serialization failure) is retried before it surfaces as ``StoreError``.
    retry_for: float = 30.0

    #: Whether concurrent appends share transactions (:mod:`saga.store.group`); the batch
    #: statement is PostgreSQL's.
    group_commit: bool = False

    #: SQL for "now" on the database's clock, as epoch seconds.
    db_now: sa.ColumnElement[float]

    def __init__(
        self, url: str, *, max_payload: int = DEFAULT_MAX_PAYLOAD, create_schema: bool = True
    ) -> None:
        if isinstance(max_payload, bool) or not isinstance(max_payload, int) or max_payload < 1:
            raise InvalidInput(f"max_payload must be a positive number of bytes, got {max_payload!r}")
        self.url = url
        self.max_payload = max_payload
        self.engine = self._create_engine(url)
        if create_schema:
            self._ensure_schema()

    # -- backend hooks ----------------------------------------------------------------------

    def _create_engine(self, url: str) -> sa.Engine:
        raise NotImplementedError  # pragma: no cover - every backend overrides it

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A write transaction (the backend decides how it locks)."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    def _lock_for_migration(self, conn: sa.Connection) -> None:
        """Serialise concurrent schema creation (backends override)."""

    # -- schema -----------------------------------------------------------------------------

    @translated
    def _ensure_schema(self) -> None:
        current = self._revision()
        if current == HEAD:
            return
        if current is not None:
            raise StoreError(
                f"the database schema is at revision {current}, this library needs {HEAD}: "
                "run `saga db upgrade`"
            )
        from .migrate import upgrade

        with self._write() as conn:
            self._lock_for_migration(conn)
            if sa.inspect(conn).has_table("alembic_version") and conn.execute(
                sa.text("SELECT version_num FROM alembic_version")
            ).first() is not None:
                return  # another process created it while we waited
            upgrade(conn)

    def _revision(self) -> str | None:
        with self._read() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
            return None if row is None else str(row[0])

    def revision(self) -> str | None:
        """The schema revision of the database (``None`` if it has none)."""
        return self._revision()

    @translated
    def upgrade(self) -> str:
        """Apply every pending migration; returns the revision the database is now at."""
        from .migrate import upgrade

        with self._write() as conn:
            self._lock_for_migration(conn)
            upgrade(conn)
        return HEAD

    # -- writing ----------------------------------------------------------------------------

    def _rows(self, saga_id: str, first_seq: int, batch: Sequence[ev.Event], writer: str | None
              ) -> list[dict[str, Any]]:
        rows = []
        # With positional driver SQL the row carries the JSON text measured here, which is
        # then written as is (serialised once).
        as_text = self._positional is not None
        for i, e in enumerate(batch):
            data = e.to_data()
            text = dumps(data)
            size = len(text.encode())
            if size > self.max_payload:
                raise PayloadTooLarge(
                    f"{e.type_name()} for saga {saga_id} is {size} bytes; the store accepts "
                    f"at most {self.max_payload}"
                )
            rows.append({
                "saga_id": saga_id,
                "seq": first_seq + i,
                "type": e.type_name(),
                "schema_version": e.schema_version,
                "data": text if as_text else data,
                "writer": writer,
            })
        return rows

    @functools.cached_property
    def _insert_stmt(self) -> sa.Insert:
        return events.insert().values(recorded_at=self.db_now)

    @functools.cached_property
    def _positional(self) -> dict[str, tuple[str, tuple[str, ...]]] | None:
        """The hot statements as driver SQL and parameter order, for ``qmark`` drivers (sqlite3).

        Compiled once by SQLAlchemy from the same Core statements; executing them with
        ``exec_driver_sql`` skips the per-call compile-cache and parameter processing, a
        good part of an append's cost on SQLite. (Their only processed column is the JSON
        ``data``, which :meth:`_rows` then hands over already serialised.)
        """
        if self.engine.dialect.paramstyle != "qmark":
            return None
        out = {}
        for name, stmt, keys in (
            ("append", _APPEND, None),
            ("append_fenced", _APPEND_FENCED, None),
            ("insert", self._insert_stmt,
             ["saga_id", "seq", "type", "schema_version", "data", "writer"]),
            ("create", _CREATE, [c.name for c in sagas.c]),
        ):
            compiled = stmt.compile(dialect=self.engine.dialect, column_keys=keys)
            out[name] = (compiled.string, tuple(compiled.positiontup or ()))
        return out

    def _execute(self, conn: sa.Connection, name: str, stmt: sa.Executable, params: dict[str, Any]
                 ) -> sa.CursorResult[Any]:
        fast = self._positional
        if fast is None:
            return conn.execute(stmt, params)
        sql, order = fast[name]
        return conn.exec_driver_sql(sql, tuple(params[k] for k in order))

    def _insert_saga(self, conn: sa.Connection, values: dict[str, Any], rows: list[dict[str, Any]]
                     ) -> None:
        """Insert a new saga's index row (``values``) and its first events (backends may merge)."""
        self._execute(conn, "create", _CREATE, values)
        self._insert_events(conn, rows)

    def _insert_events(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        fast = self._positional
        if fast is None:
            conn.execute(self._insert_stmt, rows)
            return
        sql, order = fast["insert"]
        conn.exec_driver_sql(sql, [tuple(r[k] for k in order) for r in rows])  # data: JSON text

    @translated
    def create(
        self,
        saga_id: str,
        batch: Sequence[ev.Event],
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
        rows = self._rows(saga_id, 1, batch, owner)
        ts = to_ts(now)
        try:
            with self._write() as conn:
                self._insert_saga(conn, {
                    "saga_id": saga_id,
                    "name": name,
                    "version": version,
                    "status": status.value,
                    "last_seq": len(rows),
                    "created_at": ts,
                    "updated_at": ts,
                    "wake_at": None if wake_at is None else to_ts(wake_at),
                    "lease_owner": owner if lease_until is not None else None,
                    "lease_expires_at": None if lease_until is None else to_ts(lease_until),
                }, rows)
                if owner is None and status.is_active:
                    self._wake(conn)
        except sa_exc.IntegrityError:
            # The id is taken (the primary key refuses it, and nothing is written), unless
            # by this very call: a retry after a commit whose outcome was unknown.
            return self._already_written(saga_id, rows)
        return True

    @translated
    def append(
        self,
        saga_id: str,
        expected_seq: int,
        batch: Sequence[ev.Event],
        *,
        status: SagaStatus,
        wake_at: datetime | None,
        now: datetime,
        owner: str | None = None,
        lease_until: datetime | None = None,
    ) -> None:
        rows = self._rows(saga_id, expected_seq + 1, batch, owner)
        append = _Append(
            saga_id=saga_id,
            expected=expected_seq,
            rows=rows,
            status=status.value,
            wake_at=None if wake_at is None else to_ts(wake_at),
            now=to_ts(now),
            owner=owner,
            lease_until=None if lease_until is None else to_ts(lease_until),
            wake=(status.is_active and (owner is None or lease_until is None)
                  and wake_at is not None and wake_at <= now),
        )
        try:
            item = Pending(saga_id, append)
            if self.group_commit:
                self._group.submit(item)  # raises this append's own refusal
                if not item.solo:
                    return
            self._append_alone(item)
        except sa_exc.IntegrityError as e:
            raise ConcurrencyError(
                f"saga {saga_id}: another writer appended after seq {expected_seq}"
            ) from e
        except ConcurrencyError as e:
            # A retry after a lost COMMIT finds the log moved on: if it moved on by exactly
            # these events, the first try committed and this append succeeded.
            if not rows or isinstance(e, LeaseHeld) or not self._already_written(saga_id, rows):
                raise

    @functools.cached_property
    def _group(self) -> GroupCommit:
        return GroupCommit(self._append_batch)

    def _append_alone(self, item: Pending) -> None:
        """One append in a transaction of its own."""
        a: _Append = item.payload
        fenced = a.owner is not None
        with self._write() as conn:
            stmt, name = (_APPEND_FENCED, "append_fenced") if fenced else (_APPEND, "append")
            if self._execute(conn, name, stmt, a.params()).rowcount != 1:
                self._refused(conn, a.saga_id, a.expected, a.owner)
            self._insert_events(conn, a.rows)
            if a.wake:
                self._wake(conn)

    def _append_batch(self, batch: list[Pending]) -> None:
        """Commit the appends of many sagas in one transaction (see :mod:`saga.store.group`)."""
        if len(batch) == 1:  # nothing to share: the plain append's statements are cheaper
            only = batch[0]
            try:
                self._append_alone(only)
            except SagaError as e:
                only.error = e
            except sa_exc.SQLAlchemyError:
                only.error, only.solo = None, True  # again on its own, with its fault handling
            return
        appends: list[_Append] = [it.payload for it in batch]
        # The batch travels as two JSON documents: one text parameter each is far cheaper
        # for the driver to send than a column of arrays.
        sagas_json = [a.batch_row() for a in appends]
        events_json = [row for a in appends for row in a.rows]
        try:
            with self._write() as conn:
                won = set(conn.execute(BATCH_APPEND, {
                    "sagas": dumps(sagas_json), "events": dumps(events_json),
                    "ids": [it.key for it in batch],
                }).scalars())
                for it, a in zip(batch, appends, strict=True):
                    if a.saga_id not in won:
                        try:
                            self._refused(conn, a.saga_id, a.expected, a.owner)
                        except SagaError as e:
                            it.error = e
                if any(a.wake for a in appends if a.saga_id in won):
                    self._wake(conn)
        except sa_exc.SQLAlchemyError as e:
            # Nothing is known to have committed: each append runs again on its own, with
            # its own fault handling (and its own check for a commit that did happen).
            log.warning("a group commit of %d appends failed, appending each alone: %s",
                        len(batch), first_line(e))
            for it in batch:
                it.error, it.solo = None, True

    def _already_written(self, saga_id: str, rows: list[dict[str, Any]]) -> bool:
        """Whether the log holds exactly ``rows`` (same seq, type, writer, data) already."""
        if not rows:
            return False
        first, last = rows[0]["seq"], rows[-1]["seq"]
        with self._read() as conn:
            found = conn.execute(
                sa.select(events.c.seq, events.c.type, events.c.writer, events.c.data)
                .where(events.c.saga_id == saga_id, events.c.seq.between(first, last))
                .order_by(events.c.seq)
            ).all()
        if len(found) != len(rows):
            return False
        return all(
            (f.seq, f.type, f.writer, json.loads(dumps(f.data)))
            == (r["seq"], r["type"], r["writer"],
                json.loads(r["data"] if isinstance(r["data"], str) else dumps(r["data"])))
            for f, r in zip(found, rows, strict=True)
        )

    def _wake(self, conn: sa.Connection) -> None:
        """Tell idle workers, when ``conn``'s transaction commits, that a saga became due."""

    def _refused(self, conn: sa.Connection, saga_id: str, expected_seq: int, owner: str | None
                 ) -> None:
        row = conn.execute(
            sa.select(sagas.c.last_seq, sagas.c.lease_owner, sagas.c.lease_expires_at)
            .where(sagas.c.saga_id == saga_id)
        ).first()
        if row is None:
            raise SagaNotFound(f"no saga has id {saga_id!r}")
        if row.last_seq != expected_seq:
            raise ConcurrencyError(
                f"saga {saga_id}: expected to append after seq {expected_seq}, "
                f"but the log is at {row.last_seq}"
            )
        raise LeaseHeld(
            f"saga {saga_id} is leased to {row.lease_owner} until "
            f"{from_ts(row.lease_expires_at).isoformat()}"
        )

    @translated
    def renew(self, owner: str, saga_ids: Iterable[str], *, until: datetime, now: datetime
              ) -> set[str]:
        ids = list(saga_ids)
        if not ids:
            return set()
        with self._write() as conn:
            held = conn.execute(
                sagas.update()
                .where(sagas.c.saga_id.in_(ids), sagas.c.lease_owner == owner)
                .values(lease_expires_at=to_ts(until))
                .returning(sagas.c.saga_id)
            ).scalars().all()
        return set(held)

    @translated
    def release(self, owner: str, saga_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                sagas.update()
                .where(sagas.c.saga_id == saga_id, sagas.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    # -- reading ----------------------------------------------------------------------------

    @translated
    def load(self, saga_id: str, *, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        query = _LOAD.where(events.c.seq > after).limit(limit) if after or limit else _LOAD
        with self._read() as conn:
            rows = conn.execute(query, {"b_saga_id": saga_id}).all()
        if not rows and not after:
            raise SagaNotFound(f"no saga has id {saga_id!r}")
        if not rows:
            self.summary(saga_id)  # raises SagaNotFound for a saga that does not exist
        return self._stored(saga_id, rows)

    @staticmethod
    def _stored(saga_id: str, rows: Iterable[Any]) -> list[StoredEvent]:
        """Rows of ``saga_id``'s events (as :data:`_LOAD` selects them) as stored events."""
        out = []
        for r in rows:
            try:
                parsed = ev.parse(r.type, r.data, r.schema_version)
            except ValueError as e:
                raise StoreError(f"saga {saga_id}: event {r.seq} cannot be read: {e}") from e
            out.append(StoredEvent(
                saga_id=saga_id,
                seq=r.seq,
                type=r.type,
                data=r.data,
                recorded_at=from_ts(r.recorded_at),
                writer=r.writer,
                position=r.position,
                schema_version=r.schema_version,
                _event=parsed,
            ))
        return out

    @staticmethod
    def _summary(r: sa.Row[Any]) -> SagaSummary:
        return SagaSummary(
            saga_id=r.saga_id,
            name=r.name,
            version=r.version,
            status=SagaStatus(r.status),
            last_seq=r.last_seq,
            created_at=from_ts(r.created_at),
            updated_at=from_ts(r.updated_at),
            wake_at=None if r.wake_at is None else from_ts(r.wake_at),
            lease_owner=r.lease_owner,
            lease_expires_at=None if r.lease_expires_at is None else from_ts(r.lease_expires_at),
        )

    @translated
    def summary(self, saga_id: str) -> SagaSummary:
        with self._read() as conn:
            r = conn.execute(_SUMMARY, {"b_saga_id": saga_id}).first()
        if r is None:
            raise SagaNotFound(f"no saga has id {saga_id!r}")
        return self._summary(r)

    @translated
    def find(
        self,
        *,
        status: SagaStatus | str | None = None,
        name: str | None = None,
        limit: int = 50,
    ) -> list[SagaSummary]:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput(f"limit must be a positive whole number, got {limit!r}")
        stmt = sa.select(sagas)
        if status is not None:
            try:
                stmt = stmt.where(sagas.c.status == SagaStatus(status).value)
            except ValueError:
                choices = ", ".join(s.value for s in SagaStatus)
                raise InvalidInput(f"unknown status {status!r}; choose from {choices}") from None
        if name is not None:
            stmt = stmt.where(sagas.c.name == name)
        stmt = stmt.order_by(sagas.c.updated_at.desc(), sagas.c.saga_id).limit(limit)
        with self._read() as conn:
            return [self._summary(r) for r in conn.execute(stmt)]

    def _due_query(self, now: datetime, names: Iterable[str] | None, limit: int
                   ) -> sa.Select[tuple[str]]:
        ts = to_ts(now)
        stmt = (
            sa.select(sagas.c.saga_id)
            .where(
                sagas.c.wake_at <= ts,
                sagas.c.status.in_(_ACTIVE),
                sa.or_(sagas.c.lease_owner.is_(None), sagas.c.lease_expires_at < ts),
            )
            .order_by(sagas.c.wake_at)
            .limit(limit)
        )
        if names is not None:
            stmt = stmt.where(sagas.c.name.in_(list(names)))
        return stmt

    @translated
    def due(self, now: datetime, *, names: Iterable[str] | None = None, limit: int = 100
            ) -> list[str]:
        with self._read() as conn:
            return [str(r) for r in conn.execute(self._due_query(now, names, limit)).scalars()]

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
        # (PostgreSQL claims in one statement of its own; this is the portable way.)
        names = None if names is None else list(names)
        skip = list(exclude)
        pick = self._due_query(now, names, limit)
        if skip:
            pick = pick.where(sagas.c.saga_id.not_in(skip))
        # Look before taking the write lock: most polls of an idle worker find nothing, and
        # a read does not make other processes' writers wait. The write transaction picks
        # again, under the lock, so two claimers never take the same saga.
        with self._read() as conn:
            if conn.execute(pick.limit(1)).first() is None:
                return []
        with self._write() as conn:
            ids = [str(r) for r in conn.execute(pick).scalars()]
            if ids:
                conn.execute(
                    sagas.update()
                    .where(sagas.c.saga_id.in_(ids))
                    .values(lease_owner=owner, lease_expires_at=to_ts(until))
                )
        return ids

    @translated
    def next_wake(self, *, names: Iterable[str] | None = None) -> datetime | None:
        lease_free_at = sa.case(
            (sagas.c.lease_expires_at > sagas.c.wake_at, sagas.c.lease_expires_at),
            else_=sagas.c.wake_at,
        )
        stmt = sa.select(sa.func.min(lease_free_at)).where(
            sagas.c.wake_at.is_not(None), sagas.c.status.in_(_ACTIVE)
        )
        if names is not None:
            stmt = stmt.where(sagas.c.name.in_(list(names)))
        with self._read() as conn:
            ts = conn.execute(stmt).scalar()
        return None if ts is None else from_ts(ts)

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.engine.url.render_as_string(hide_password=True)!r})"

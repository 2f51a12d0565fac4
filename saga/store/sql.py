"""What the SQL backends share, on SQLAlchemy Core: opening (schema checks), the append with
its fence, reading, the portable claim, the read side (:mod:`saga.store.sqlreads`) and the
attempts projection (:mod:`saga.store.projection`).

Nothing here is one database's: each backend (:mod:`saga.store.sqlite`,
:mod:`saga.store.postgres`) supplies its engine, its transactions and locking,
and how it inserts events, and overrides what it does better in its own SQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from saga import events as ev
from saga.errors import ConcurrencyError, InvalidInput, LeaseHeld, SagaNotFound
from saga.secrets.keys import KeyRing
from saga.state import SagaStatus
from saga.store import statements as q
from saga.store.appends import Append, refusal
from saga.store.base import (
    DEFAULT_MAX_PAYLOAD,
    EventStore,
    SagaSummary,
    SchemaMode,
    StoredEvent,
    check_saga_id,
)
from saga.store.chain import HashCache, chain, failed_step_of
from saga.store.opening import SchemaChecks
from saga.store.projection import Projector
from saga.store.rules import check_page, encoded
from saga.store.schema import events, sagas
from saga.store.statements import stored_event
from saga.store.transient import translated

__all__ = ["SqlEventStore"]


class SqlEventStore(SchemaChecks, Projector, EventStore):
    """The saga event log in a SQL database (a backend subclasses it with its engine and locking)."""

    engine: sa.Engine

    #: Seconds a transient database fault (dropped connection, server restart,
    #: serialization failure) is retried before it surfaces as ``StoreError``.
    retry_for: float = 30.0

    def __init__(
        self,
        url: str,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        schema: SchemaMode = "create",
        encryption_key: str | KeyRing | None = None,
    ) -> None:
        super().__init__(url, max_payload=max_payload, schema=schema, encryption_key=encryption_key)
        self._hashes: HashCache[str] = HashCache()
        self.engine = self._create_engine(url)
        if schema != "skip":
            self._open(ensure=schema == "create")

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

    def _create_saga(self, values: dict[str, Any], rows: list[dict[str, Any]], *, wake: bool
                     ) -> None:
        """Commit a new saga's index row (``values``, as ``CREATE`` takes them) and its first
        events; ``wake``: the saga is due with no one holding it
        (tell idle workers)."""
        raise NotImplementedError  # pragma: no cover - every backend writes it its own way

    def _append_alone(self, a: Append) -> None:
        """Commit one append in a transaction of its own: its ``seq`` and lease checked in
        the same statement that moves the saga's row on (``APPEND``/``APPEND_FENCED`` or
        the backend's equivalent), then its events (chained first if ``a.chained`` is false);
        raises :func:`refusal`'s error if the check fails."""
        raise NotImplementedError  # pragma: no cover - every backend writes it its own way

    def _commit_append(self, append: Append) -> None:
        """Commit one append (a backend may batch it with others')."""
        self._append_alone(append)

    def _recording_time(self) -> float:
        """When events written now are recorded (``recorded_at``, which their hash covers), on
        the database's clock, in epoch seconds holding a whole number of microseconds.
        SQLite's clock is this machine's; a server's backend reads the server's."""
        return time.time_ns() // 1000 / 1_000_000

    # -- writing ----------------------------------------------------------------------------

    def _rows(self, saga_id: str, first_seq: int, batch: Sequence[ev.Event], writer: str | None
              ) -> tuple[list[dict[str, Any]], bool]:
        """The event rows (hashed) and whether the hashes are chained from the
        previous event's (known for a new saga and when cached, and nothing to chain when there
        are no rows; else the backend looks it up and calls :func:`~saga.store.chain.chain`
        again)."""
        rows = []
        recorded_at = self._recording_time()
        for i, e in enumerate(batch):
            _, text = encoded(saga_id, e, self.max_payload)
            rows.append({
                "saga_id": saga_id,
                "seq": first_seq + i,
                "type": e.type_name(),
                "schema_version": e.schema_version,
                "data": text,
                "recorded_at": recorded_at,
                "writer": writer,
            })
        if not rows:  # nothing to chain: no need to know the previous hash
            return rows, True
        previous = None if first_seq == 1 else self._hashes.get(saga_id, first_seq - 1)
        chain(rows, previous)
        return rows, first_seq == 1 or previous is not None

    def _remember(self, rows: list[dict[str, Any]]) -> None:
        """Cache the last hash of rows just committed."""
        if rows:
            self._hashes.put(rows[-1]["saga_id"], rows[-1]["seq"], rows[-1]["hash"])

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
        rows, _ = self._rows(saga_id, 1, batch, owner)
        ts = now.timestamp()
        values = {
            "saga_id": saga_id,
            "name": name,
            "version": version,
            "status": status.value,
            "last_seq": len(rows),
            "created_at": ts,
            "updated_at": ts,
            "wake_at": None if wake_at is None else wake_at.timestamp(),
            "lease_owner": owner if lease_until is not None else None,
            "lease_expires_at": None if lease_until is None else lease_until.timestamp(),
            "failed_step": failed_step_of(batch),
        }
        try:
            self._create_saga(values, rows, wake=owner is None and status.is_active)
        except sa_exc.IntegrityError:
            # The id is taken (the primary key refuses it, and nothing is written), unless
            # by this very call: a retry after a commit whose outcome was unknown.
            return self._already_written(saga_id, rows)
        self._remember(rows)
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
        rows, chained = self._rows(saga_id, expected_seq + 1, batch, owner)
        append = Append(
            saga_id=saga_id,
            expected=expected_seq,
            rows=rows,
            chained=chained,
            failed_step=failed_step_of(batch),
            status=status.value,
            wake_at=None if wake_at is None else wake_at.timestamp(),
            now=now.timestamp(),
            owner=owner,
            lease_until=None if lease_until is None else lease_until.timestamp(),
            wake=(status.is_active and (owner is None or lease_until is None)
                  and wake_at is not None and wake_at <= now),
        )
        try:
            self._commit_append(append)
        except sa_exc.IntegrityError as e:
            raise ConcurrencyError(
                f"saga {saga_id}: another writer appended after seq {expected_seq}"
            ) from e
        except ConcurrencyError as e:
            # A retry after a lost COMMIT finds the log moved on: if it moved on by exactly
            # these events, the first try committed and this append succeeded (with the
            # first try's recording time and hashes: the next append reads them from the log).
            if not rows or isinstance(e, LeaseHeld) or not self._already_written(saga_id, rows):
                raise
            return
        self._remember(rows)

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
            (f.seq, f.type, f.writer, f.data) == (r["seq"], r["type"], r["writer"], json.loads(r["data"]))
            for f, r in zip(found, rows, strict=True)
        )

    @staticmethod
    def _refused(conn: sa.Connection, saga_id: str, expected_seq: int) -> None:
        """Raise why an append's ``UPDATE`` matched no row: no saga, a stale seq, or a lease."""
        raise refusal(conn.execute(q.REFUSED, {"b_saga_id": saga_id}).first(), saga_id, expected_seq)

    @translated
    def renew(self, owner: str, saga_ids: Iterable[str], *, until: datetime) -> set[str]:
        ids = list(saga_ids)
        if not ids:
            return set()
        with self._write() as conn:
            held = conn.execute(
                sagas.update()
                .where(sagas.c.saga_id.in_(ids), sagas.c.lease_owner == owner)
                .values(lease_expires_at=until.timestamp())
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
        check_page(after, limit)
        with self._read() as conn:
            if limit is None:
                rows = conn.execute(q.LOAD, {"b_saga_id": saga_id, "b_after": after}).all()
            else:
                rows = conn.execute(q.LOAD_PAGE, {"b_saga_id": saga_id, "b_after": after,
                                                  "b_limit": limit}).all()
            if not rows and conn.execute(q.EXISTS, {"b_saga_id": saga_id}).first() is None:
                raise SagaNotFound(f"no saga has id {saga_id!r}")
        return self._stored(saga_id, rows)

    def _stored(self, saga_id: str, rows: Iterable[Sequence[Any]]) -> list[StoredEvent]:
        """Rows of ``saga_id``'s events (as ``LOAD`` selects them) as stored events (the last
        one's hash is remembered for the next append)."""
        out = [stored_event(saga_id, r) for r in rows]
        if out:
            self._hashes.put(saga_id, out[-1].seq, out[-1].hash)
        return out

    @translated
    def summary(self, saga_id: str) -> SagaSummary:
        with self._read() as conn:
            r = conn.execute(q.SUMMARY, {"b_saga_id": saga_id}).first()
        if r is None:
            raise SagaNotFound(f"no saga has id {saga_id!r}")
        return q.summary_of(r)

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
            return [q.summary_of(r) for r in conn.execute(stmt)]

    @translated
    def due(self, now: datetime, *, names: Iterable[str] | None = None, limit: int = 100
            ) -> list[str]:
        stmt = q.due_query(now.timestamp(), None if names is None else list(names), limit)
        with self._read() as conn:
            return [str(r) for r in conn.execute(stmt).scalars()]

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
        pick = q.due_query(now.timestamp(), None if names is None else list(names), limit,
                           list(exclude))
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
                    .values(lease_owner=owner, lease_expires_at=until.timestamp())
                )
        return ids

    @translated
    def next_wake(self, *, names: Iterable[str] | None = None) -> datetime | None:
        stmt = sa.select(sa.func.min(q.lease_free_at())).where(
            sagas.c.wake_at.is_not(None), sagas.c.status.in_(q.ACTIVE)
        )
        if names is not None:
            stmt = stmt.where(sagas.c.name.in_(list(names)))
        with self._read() as conn:
            ts = conn.execute(stmt).scalar()
        return None if ts is None else q.from_ts(ts)

    def close(self) -> None:
        self.engine.dispose()

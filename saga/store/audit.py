"""Tamper evidence: checking each saga's hash chain (:mod:`saga.store.hashing`), and a head.

Changing, removing or reordering a row, or moving its time, breaks the chain
at that row; :func:`verify` names the first such row of every saga.

Cutting events off the *end* of a saga, or deleting a saga whole, leaves
every chain inside the database intact. Two checks catch it: the saga index
row still names the old last ``seq`` (pass the index rows to :func:`verify`),
and a :class:`Head` taken earlier and kept elsewhere: a digest over every
saga's last event at or before a position of the log. Events appended since
come after that position, so a log that only grew still matches its head;
one that lost events the head covered does not.

Everything here is a pure function over iterables: the caller streams rows
from SQL, and memory grows only with the number of tampered sagas. Rows must
come ordered by saga id in code point order (binary order of UTF-8:
SQLite's default ``BINARY`` collation, ``COLLATE "C"`` on PostgreSQL), then
by ``seq``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from saga.store.hashing import (
    HASH_VERSION,
    canonical_json,
    event_hash,
    stored_event_hash,
    stored_text,
)
from saga.text import count

__all__ = [
    "AuditProblem",
    "AuditReport",
    "AuditRow",
    "ChainedRow",
    "Head",
    "HeadBuilder",
    "IndexRow",
    "verify",
]


class ChainedRow(Protocol):
    """What :func:`verify` reads from a row of the log (a SQLAlchemy row fits)."""

    @property
    def position(self) -> int: ...
    @property
    def saga_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def schema_version(self) -> int: ...
    @property
    def data(self) -> Any:
        """The event's data: its JSON text as stored (a ``str``), or its JSON value (an object)."""
    @property
    def recorded_at(self) -> float: ...
    @property
    def hash_version(self) -> int: ...
    @property
    def hash(self) -> str | None: ...


class IndexRow(Protocol):
    """What :func:`verify` reads from a saga's index row: where its log should end."""

    @property
    def saga_id(self) -> str: ...
    @property
    def last_seq(self) -> int: ...


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One row of the log as the verifier reads it (for callers without a row object)."""

    saga_id: str
    seq: int
    type: str
    schema_version: int
    data: Any
    hash: str | None
    recorded_at: float = 0.0
    hash_version: int = 1
    position: int = 0


HEAD_FORMAT = "2"
"""The first field of a head as text: the format of :class:`Head` (before it: a bare digest)."""


@dataclass(frozen=True, slots=True)
class Head:
    """A digest over every saga's last event at or before ``position`` in the log, with how many
    sagas that covers and the sum of their last ``seq`` (``events``).

    As text (``str(head)``, what ``saga audit head`` prints):
    ``2:POSITION:SAGAS:EVENTS:DIGEST``. Events appended later have later
    positions, so the head stays true of a log that only grew.
    """

    position: int
    sagas: int
    events: int
    digest: str

    def __str__(self) -> str:
        return f"{HEAD_FORMAT}:{self.position}:{self.sagas}:{self.events}:{self.digest}"

    @classmethod
    def parse(cls, text: str) -> Head:
        """A head from its text; raises ``ValueError`` saying what is wrong with it (a bare
        64-digit digest is a head from before this format, which cannot be checked)."""
        if len(text) == 64 and all(c in _HEX for c in text):
            raise ValueError(
                "this is a head from before heads recorded the position they cover (a bare "
                "digest): it cannot tell a log that grew from one that was cut; take a new one "
                "with `saga audit head`")
        fields = text.split(":")
        numbers = fields[1:4]
        if (len(fields) != 5 or fields[0] != HEAD_FORMAT
                or not all(n.isascii() and n.isdigit() and len(n) <= 20 for n in numbers)
                or len(fields[4]) != 64 or not all(c in _HEX for c in fields[4])):
            raise ValueError("expected a head as `saga audit head` prints it "
                             "(2:POSITION:SAGAS:EVENTS:DIGEST)")
        position, sagas, events = (int(n) for n in numbers)
        return cls(position, sagas, events, fields[4])

    def describe(self) -> str:
        """``"N sagas with M events"`` (``"1 saga with 1 event"``): what the head covers."""
        return f"{count(self.sagas, 'saga')} with {count(self.events, 'event')}"


_HEX = frozenset("0123456789abcdef")


class HeadBuilder:
    """A :class:`Head` built from each saga's last event at or before a position, given in saga
    id order (code point order; ``ValueError`` otherwise)."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256(b"saga-coordinator audit head v2\n")
        self._previous: str | None = None
        self._sagas = self._events = 0

    def add(self, saga_id: str, seq: int, last_hash: str | None) -> None:
        """Count ``saga_id``, whose last event at or before the position is ``seq``."""
        _check_order(self._previous, saga_id)
        self._previous = saga_id
        self._digest.update(canonical_json([saga_id, seq, last_hash]) + b"\n")
        self._sagas += 1
        self._events += seq

    def head(self, position: int) -> Head:
        """The head of everything added: the last events at or before ``position``."""
        return Head(position, self._sagas, self._events, self._digest.hexdigest())


def _check_order(previous: str | None, saga_id: str) -> None:
    if previous is not None and saga_id <= previous:
        raise ValueError(
            f"rows are not ordered by saga id in code point order ({previous!r} before {saga_id!r}); "
            f'on PostgreSQL order by saga_id COLLATE "C"'
        )


Kind = Literal["changed", "removed", "reordered", "truncated", "head"]


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """The first place a saga's log differs from what was written.

    ``kind``: ``changed`` (the row's content, time or hash does not match its
    chain), ``removed`` (a ``seq`` is missing), ``reordered`` (a ``seq``
    repeats or goes back), ``truncated`` (the saga index says the log goes on
    past its last row, or a saga has no rows at all) or ``head`` (the log
    differs from a head taken earlier: events it covered were cut off the end
    of some saga, or a saga was deleted whole, and no saga can be named).
    ``saga_id`` and ``seq`` are ``None`` only for ``head``.
    """

    kind: Kind
    saga_id: str | None
    seq: int | None
    message: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What :func:`verify` found: counts of what it checked, the head of what it read, and one
    problem for each saga tampered with (and one for a head that differs)."""

    sagas: int
    events: int
    head: Head
    problems: tuple[AuditProblem, ...]

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.problems

    @property
    def problem(self) -> AuditProblem | None:
        """The first problem (``None``: there is none)."""
        return self.problems[0] if self.problems else None

    def lines(self) -> list[str]:
        """For people: one line of what was checked, or one line for each problem."""
        if not self.problems:
            return [f"ok: {count(self.sagas, 'saga')}, {count(self.events, 'event')} verified"]
        return [f"tampered: {p.message}" for p in self.problems]

    def summary(self) -> str:
        """:meth:`lines` as one text."""
        return "\n".join(self.lines())


class _Sagas:
    """The saga index rows, consumed in step with the event rows (a merge join)."""

    def __init__(self, rows: Iterable[IndexRow] | None) -> None:
        self._it: Iterator[IndexRow] | None = iter(rows) if rows is not None else None
        self._next: IndexRow | None = None
        self._previous: str | None = None
        self._advance()

    def _advance(self) -> None:
        self._next = next(self._it, None) if self._it is not None else None
        if self._next is not None:
            _check_order(self._previous, self._next.saga_id)
            self._previous = self._next.saga_id

    def until(self, saga_id: str | None) -> Iterator[IndexRow]:
        """Index rows with ids before ``saga_id`` (``None``: all that are left): sagas with no events."""
        while self._next is not None and (saga_id is None or self._next.saga_id < saga_id):
            yield self._next
            self._advance()

    def last_seq_of(self, saga_id: str) -> int | None:
        """The index's last ``seq`` for ``saga_id`` (``None``: no index rows given, or none for it)."""
        if self._next is not None and self._next.saga_id == saga_id:
            row = self._next
            self._advance()
            return row.last_seq
        return None


class _Chain:
    """One saga's rows as they are read: the chain so far, and its last event within the head."""

    def __init__(self, saga_id: str) -> None:
        self.saga_id = saga_id
        self.expected_seq = 1
        self.last_hash: str | None = None
        self.version = 1
        self.problem: AuditProblem | None = None
        self.covered: tuple[int, str | None] | None = None  # last (seq, hash) within the head

    def check(self, row: ChainedRow) -> AuditProblem | None:
        """The problem ``row`` shows, if any; else the chain moves on past it."""
        where = f"saga {row.saga_id}: seq {self.expected_seq}"
        if row.seq > self.expected_seq:
            return AuditProblem("removed", row.saga_id, self.expected_seq,
                                f"{where} is missing (the next row has seq {row.seq})")
        if row.seq < self.expected_seq:
            return AuditProblem("reordered", row.saga_id, row.seq,
                                f"saga {row.saga_id}: seq {row.seq} comes again after seq "
                                f"{self.expected_seq - 1}")
        version = row.hash_version
        computed = None
        if version >= self.version:  # a chain's versions never go down
            computed = _hash(row, version, self.last_hash)
        if computed is None or row.hash != computed:
            return AuditProblem("changed", row.saga_id, row.seq,
                                f"{where} was changed, removed or reordered (its hash does not "
                                f"match the chain)")
        self.version, self.last_hash = version, computed
        self.expected_seq += 1
        return None


def _hash(row: ChainedRow, version: int, previous: str | None) -> str | None:
    """The hash ``row`` should carry by its own hash version (``None``: no such version)."""
    if version == HASH_VERSION:  # the data's text as stored
        text = row.data if isinstance(row.data, str) else stored_text(row.data)
        return stored_event_hash(row.saga_id, row.seq, row.type, row.schema_version, text,
                                 previous, row.recorded_at)
    if version in (1, 2):  # the canonical JSON of the data, however its text is laid out
        data = json.loads(row.data) if isinstance(row.data, str) else row.data
        return event_hash(row.saga_id, row.seq, row.type, row.schema_version, data, previous,
                          None if version == 1 else row.recorded_at)
    return None


def verify(
    rows: Iterable[ChainedRow],
    *,
    sagas: Iterable[IndexRow] | None = None,
    head: Head | None = None,
) -> AuditReport:
    """Recompute every chain in ``rows`` (ordered by saga id, then ``seq``); name the first
    problem of each saga.

    With ``sagas`` (the index rows ``saga_id, last_seq``, in the same order)
    it also catches events cut off the end of a saga and sagas whose events
    are all gone. With ``head`` (taken earlier, kept elsewhere) it also
    catches events the head covered that were cut off the end of a saga, or
    deleted with their saga whole; events appended since the head do not
    matter to it. Reads each row once and keeps only the current saga's chain.
    The report's :attr:`~AuditReport.head` is over everything read (over what
    ``head`` covers, when given).
    """
    index = _Sagas(sagas)
    cutoff = None if head is None else head.position
    found = HeadBuilder()
    problems: list[AuditProblem] = []
    n_sagas = n_events = top = 0
    current: _Chain | None = None

    def orphans(before: str | None) -> None:
        for r in index.until(before):
            problems.append(AuditProblem("truncated", r.saga_id, 1,
                                         f"saga {r.saga_id}: seq 1 is missing (no events; its "
                                         f"index row says {r.last_seq})"))

    def close(saga: _Chain) -> None:
        indexed = index.last_seq_of(saga.saga_id)
        if saga.problem is None and indexed is not None and indexed > saga.expected_seq - 1:
            saga.problem = AuditProblem(
                "truncated", saga.saga_id, saga.expected_seq,
                f"saga {saga.saga_id}: seq {saga.expected_seq} is missing (the log ends at seq "
                f"{saga.expected_seq - 1}, its index row says {indexed})")
        if saga.problem is not None:
            problems.append(saga.problem)
        if saga.covered is not None:
            found.add(saga.saga_id, *saga.covered)

    for row in rows:
        if current is None or row.saga_id != current.saga_id:
            if current is not None:
                _check_order(current.saga_id, row.saga_id)
                close(current)
            orphans(row.saga_id)
            current = _Chain(row.saga_id)
            n_sagas += 1
        if cutoff is None or row.position <= cutoff:
            current.covered = (row.seq, row.hash)
        top = max(top, row.position)
        if current.problem is None:
            current.problem = current.check(row)
            n_events += current.problem is None
    if current is not None:
        close(current)
    orphans(None)
    ours = found.head(top if head is None else head.position)
    if head is not None and ours != head:
        problems.append(AuditProblem(
            "head", None, None,
            f"the log differs from the head (taken at position {head.position}: "
            f"{head.describe()}; now {ours.describe()} up to that position): events were cut off "
            f"the end of a saga, or a saga was deleted whole, since it was taken"))
    return AuditReport(n_sagas, n_events, ours, tuple(problems))

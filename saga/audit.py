"""Tamper evidence: each event's hash chained to the previous one of its saga, and a head digest.

Each event stores ``hash`` = SHA-256 (hex) over the canonical JSON of
``[saga_id, seq, type, schema_version, data, previous_hash]``, where
``previous_hash`` is the hash of the event before it in the same saga
(``null`` for ``seq`` 1). Changing, removing or reordering a row breaks the
chain at that row; :func:`verify` finds the first such row.

Cutting events off the *end* of a saga, or deleting a saga whole, leaves
every chain inside the database intact. Two checks catch it: the saga index
row still names the old last ``seq`` (pass the index rows to :func:`verify`),
and :func:`head_digest` over every saga's last hash, taken earlier and kept
elsewhere, no longer matches.

Everything here is a pure function over iterables, in constant memory:
the caller streams rows from SQL. Rows must come ordered by saga id in code
point order (binary order of UTF-8: SQLite's default ``BINARY`` collation,
``COLLATE "C"`` on PostgreSQL), then by ``seq``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any, Literal, Protocol

from .text import count

__all__ = [
    "AuditProblem",
    "AuditReport",
    "AuditRow",
    "ChainedRow",
    "IndexRow",
    "canonical_json",
    "canonical_text",
    "event_hash",
    "head_digest",
    "verify",
]


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)
"""Sorted keys, no spaces, UTF-8, no NaN: built once (``json.dumps`` with options builds an
encoder per call)."""


def canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON: sorted keys, no spaces, UTF-8, no NaN or infinity, and a
    float with an integral value written as the integer (``1.0`` and ``1e16`` as ``1`` and
    ``10000000000000000``), since a database may hand back either form of the same number."""
    return _CANONICAL.encode(_numbers(value)).encode("utf-8")


def _numbers(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_numbers(v) for v in value]
    return value


_INTEGRAL_FLOAT_MARKS = (".0,", ".0]", ".0}", "e+")
"""How Python writes a float with an integral value: ``1.0`` before a delimiter, or ``1e+16``."""


def canonical_text(value: Any) -> str:
    """:func:`canonical_json` as text, the common case fast: the JSON is written once (in C),
    and only if it may hold a float with an integral value (a mark of one appears in it, if
    only inside a string) is it written again with those floats made integers."""
    text = _CANONICAL.encode(value)
    if any(mark in text for mark in _INTEGRAL_FLOAT_MARKS) or text.endswith(".0"):
        return canonical_json(value).decode("utf-8")
    return text


def event_hash(  # noqa: PLR0917 - the fields hashed, in their order
    saga_id: str, seq: int, type_: str, schema_version: int, data: Any, previous_hash: str | None
) -> str:
    """The SHA-256 (hex) that chains one event to the previous event of its saga: over the
    canonical JSON of ``[saga_id, seq, type, schema_version, data, previous_hash]``."""
    # the canonical JSON of the list, written piece by piece (the same text, at less cost)
    body = (f"[{encode_basestring(saga_id)},{int(seq)},{encode_basestring(type_)},"
            f"{int(schema_version)},{canonical_text(data)},"
            f"{'null' if previous_hash is None else encode_basestring_ascii(previous_hash)}]")
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class ChainedRow(Protocol):
    """What :func:`verify` reads from a row of the log (a SQLAlchemy row fits)."""

    @property
    def saga_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def schema_version(self) -> int: ...
    @property
    def data(self) -> Any: ...
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


def _head_line(saga_id: str, seq: int, last_hash: str) -> bytes:
    return canonical_json([saga_id, seq, last_hash]) + b"\n"


def head_digest(heads: Iterable[tuple[str, int, str]]) -> str:
    """One SHA-256 (hex) over every saga's ``(saga_id, last seq, last hash)``, ordered by saga id.

    Raises ``ValueError`` if the saga ids are not strictly increasing in code point order.
    """
    digest = hashlib.sha256(b"saga-coordinator audit head v1\n")
    previous: str | None = None
    for saga_id, seq, last_hash in heads:
        _check_order(previous, saga_id)
        previous = saga_id
        digest.update(_head_line(saga_id, seq, last_hash))
    return digest.hexdigest()


def _check_order(previous: str | None, saga_id: str) -> None:
    if previous is not None and saga_id <= previous:
        raise ValueError(
            f"rows are not ordered by saga id in code point order ({previous!r} before {saga_id!r}); "
            f'on PostgreSQL order by saga_id COLLATE "C"'
        )


Kind = Literal["changed", "removed", "reordered", "truncated", "head"]


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """The first place the log differs from what was written.

    ``kind``: ``changed`` (the row's content or hash does not match its chain),
    ``removed`` (a ``seq`` is missing), ``reordered`` (a ``seq`` repeats or goes
    back), ``truncated`` (the saga index says the log goes on past its last row,
    or a saga has no rows at all) or ``head`` (the head digest differs: events
    were cut off the end of some saga, or a saga was deleted whole, and no
    saga can be named). ``saga_id`` and ``seq`` are ``None`` only for ``head``.
    """

    kind: Kind
    saga_id: str | None
    seq: int | None
    message: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What :func:`verify` found: counts of what it checked, the head digest, the first problem."""

    sagas: int
    events: int
    head: str
    problem: AuditProblem | None

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return self.problem is None

    def summary(self) -> str:
        """One line for people: what was checked, or where the log was tampered with."""
        if self.problem is None:
            return f"ok: {count(self.sagas, 'saga')}, {count(self.events, 'event')} verified"
        return f"tampered: {self.problem.message}"


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


def verify(
    rows: Iterable[ChainedRow],
    *,
    sagas: Iterable[IndexRow] | None = None,
    head: str | None = None,
) -> AuditReport:
    """Recompute every chain in ``rows`` (ordered by saga id, then ``seq``); stop at the first problem.

    With ``sagas`` (the index rows ``saga_id, last_seq``, in the same order)
    it also catches events cut off the end of a saga and sagas whose events
    are all gone. With ``head`` (a digest from :func:`head_digest`, taken
    earlier) it also catches whole sagas deleted with their index rows. Reads
    each row once and keeps only the current saga's last hash.
    """
    index = _Sagas(sagas)
    digest = hashlib.sha256(b"saga-coordinator audit head v1\n")
    n_sagas = n_events = 0
    current: str | None = None
    expected_seq = 1
    last_hash: str | None = None

    def report(problem: AuditProblem | None) -> AuditReport:
        return AuditReport(n_sagas, n_events, digest.hexdigest(), problem)

    def close_saga() -> AuditProblem | None:
        if current is None:
            return None
        indexed = index.last_seq_of(current)
        if indexed is not None and indexed > expected_seq - 1:
            return AuditProblem("truncated", current, expected_seq,
                                f"saga {current}: seq {expected_seq} is missing (the log ends at seq "
                                f"{expected_seq - 1}, its index row says {indexed})")
        digest.update(_head_line(current, expected_seq - 1, last_hash or ""))
        return None

    def orphans(before: str | None) -> AuditProblem | None:
        for row in index.until(before):
            return AuditProblem("truncated", row.saga_id, 1,
                                f"saga {row.saga_id}: seq 1 is missing (no events; its index row says "
                                f"{row.last_seq})")
        return None

    for row in rows:
        if row.saga_id != current:
            if current is not None:
                _check_order(current, row.saga_id)
            problem = close_saga() or orphans(row.saga_id)
            if problem:
                return report(problem)
            current, expected_seq, last_hash = row.saga_id, 1, None
            n_sagas += 1
        where = f"saga {row.saga_id}: seq {expected_seq}"
        if row.seq > expected_seq:
            return report(AuditProblem("removed", row.saga_id, expected_seq,
                                       f"{where} is missing (the next row has seq {row.seq})"))
        if row.seq < expected_seq:
            return report(AuditProblem("reordered", row.saga_id, row.seq,
                                       f"saga {row.saga_id}: seq {row.seq} comes again after seq "
                                       f"{expected_seq - 1}"))
        computed = event_hash(row.saga_id, row.seq, row.type, row.schema_version, row.data, last_hash)
        if row.hash != computed:
            return report(AuditProblem("changed", row.saga_id, row.seq,
                                       f"{where} was changed, removed or reordered (its hash does not "
                                       f"match the chain)"))
        n_events += 1
        last_hash = computed
        expected_seq += 1
    problem = close_saga() or orphans(None)
    if problem:
        return report(problem)
    result = report(None)
    if head is not None and head != result.head:
        return report(AuditProblem("head", None, None,
                                   "the head digest differs from the one given: events were cut off the "
                                   "end of a saga, or a saga was deleted whole, since it was taken"))
    return result

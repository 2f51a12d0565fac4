"""What the read side of a store answers with: a page of sagas, statistics, exported events,
an audit report and a head; and the checks every backend makes of what it is asked.

The read side is part of the store interface (:class:`saga.store.EventLog`:
``list_sagas``, ``stats``, ``export``, ``verify``, ``head``). These values are
the same whichever backend computed them.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from saga.errors import InvalidInput, SagaNotFound
from saga.state import SagaStatus
from saga.store.audit import AuditProblem, AuditReport, Head

__all__ = [
    "HEAD_WAIT", "MAX_LIMIT", "PERCENTILES", "AuditProblem", "AuditReport", "ExportRow", "Head",
    "SagaCounts", "SagaPage", "SagaRow", "Stats", "StepStats", "check_listing", "decode_cursor",
    "encode_cursor", "nearest_rank", "parked_reason", "reported", "wanted_head",
]

MAX_LIMIT = 10_000
"""The most sagas one page of ``list_sagas`` holds."""

HEAD_WAIT = 30.0
"""Seconds ``head`` waits, on PostgreSQL, for transactions writing events to end."""

PERCENTILES = (50, 95, 99)
"""The percentiles of attempt durations the statistics give."""


@dataclass(frozen=True, slots=True)
class SagaRow:
    """A saga as ``saga list`` shows it."""

    saga_id: str
    name: str
    version: int
    status: str
    started_at: datetime
    updated_at: datetime
    failed_step: str | None
    parked: str | None = None
    """Why no worker can drive the saga now: its log ends with a ``SagaParked``."""

    def to_json(self) -> dict[str, Any]:
        """``{"id", "name", "status", "started_at", "updated_at", "failed_step", "parked"}``
        (times ISO 8601)."""
        return {"id": self.saga_id, "name": self.name, "status": self.status,
                "started_at": self.started_at.isoformat(), "updated_at": self.updated_at.isoformat(),
                "failed_step": self.failed_step, "parked": self.parked}


@dataclass(frozen=True, slots=True)
class SagaPage:
    """One page of ``list_sagas``; ``cursor`` fetches the next (``None``: this is the last)."""

    rows: list[SagaRow]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One event as ``saga export`` writes it."""

    saga_id: str
    seq: int
    type: str
    recorded_at: datetime
    data: Any
    hash: str | None

    def to_json(self) -> dict[str, Any]:
        """``{"saga_id", "seq", "type", "recorded_at", "data", "hash"}`` (``recorded_at`` ISO 8601)."""
        return {"saga_id": self.saga_id, "seq": self.seq, "type": self.type,
                "recorded_at": self.recorded_at.isoformat(), "data": self.data, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class SagaCounts:
    """How sagas of one name ended, or that they are still running (compensating included)."""

    completed: int = 0
    compensated: int = 0
    failed: int = 0
    running: int = 0

    def to_json(self) -> dict[str, int]:
        """The counts as a JSON object."""
        return {"completed": self.completed, "compensated": self.compensated,
                "failed": self.failed, "running": self.running}


@dataclass(frozen=True, slots=True)
class StepStats:
    """How one step's forward attempts went; durations in seconds (``None``: none finished)."""

    attempts: int
    successes: int
    failures: int
    timeouts: int
    lost: int
    p50: float | None
    p95: float | None
    p99: float | None

    @property
    def attempts_per_success(self) -> float | None:
        """Attempts started per success (``None`` when no attempt succeeded)."""
        return self.attempts / self.successes if self.successes else None

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON object."""
        return {"attempts": self.attempts, "successes": self.successes, "failures": self.failures,
                "timeouts": self.timeouts, "lost": self.lost,
                "attempts_per_success": self.attempts_per_success,
                "p50": self.p50, "p95": self.p95, "p99": self.p99}


@dataclass(frozen=True, slots=True)
class Stats:
    """The statistics ``saga stats`` prints.

    - ``sagas``, per saga name: how many sagas ``completed``,
      ``compensated``, ``failed``, and are still ``running`` (going forward or
      compensating).
    - ``steps``, keyed ``"<saga name>/<step>"`` (forward attempts only):
      ``attempts`` started, ``successes``, ``failures`` (errors), ``timeouts``,
      ``lost`` (the worker died first), and the ``p50``/``p95``/``p99`` of
      attempt duration in seconds, nearest rank (:func:`nearest_rank`), over
      attempts with a recorded outcome other than lost. A duration runs from
      the attempt's start to its outcome, by the times in the events (the
      coordinator's clock, the same the timeline shows).
    - ``top_errors``: ``(error_type, count)`` over every failed attempt,
      forward or compensation, commonest first (then by error type).
    """

    sagas: dict[str, SagaCounts]
    steps: dict[str, StepStats]
    top_errors: list[tuple[str, int]]

    def to_json(self) -> dict[str, Any]:
        """``{"sagas": {name: counts}, "steps": {"name/step": figures}, "top_errors": [[type, n]]}``."""
        return {"sagas": {k: v.to_json() for k, v in self.sagas.items()},
                "steps": {k: v.to_json() for k, v in self.steps.items()},
                "top_errors": [[t, n] for t, n in self.top_errors]}


def nearest_rank(p: int, n: int) -> int:
    """The nearest rank (from 1) of percentile ``p`` among ``n`` values: the smallest r with 100 r >= p n."""
    return max(1, -(-p * n // 100))


def encode_cursor(started: float, saga_id: str) -> str:
    """The cursor of the page after the saga ``saga_id``, started at ``started`` (epoch seconds)."""
    raw = json.dumps([started, saga_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, str]:
    """``(started, saga_id)`` of a cursor :func:`encode_cursor` made; raises ``InvalidInput``."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        started, saga_id = json.loads(raw)
        if isinstance(started, bool) or not isinstance(started, int | float) \
                or not isinstance(saga_id, str) or not saga_id.isprintable():
            raise ValueError
        return float(started), saga_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise InvalidInput(f"--cursor {shown!r} is not a cursor from a previous page") from None


def check_listing(status: str | None, limit: int, cursor: str | None) -> tuple[float, str] | None:
    """Check the status, limit and cursor of ``list_sagas``; returns where the page starts
    (``None``: at the newest saga). Raises ``InvalidInput``."""
    if status is not None and status not in {s.value for s in SagaStatus}:
        choices = ", ".join(s.value for s in SagaStatus)
        raise InvalidInput(f"unknown status {status!r}; choose from {choices}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {limit!r}")
    return None if cursor is None else decode_cursor(cursor)


def wanted_head(head: str | Head | None, saga_id: str | None) -> Head | None:
    """The head ``verify`` is asked to check against; raises ``InvalidInput`` for a head with a
    saga id, or text that is not a head."""
    if head is not None and saga_id is not None:
        raise InvalidInput("--head covers the whole log: verify without a saga id to check it")
    if head is None or isinstance(head, Head):
        return head
    try:
        return Head.parse(head)
    except ValueError as e:
        raise InvalidInput(f"--head {head[:80]!r}: {e}") from None


def reported(report: AuditReport, saga_id: str | None) -> AuditReport:
    """``report``, or ``SagaNotFound`` when it verified the one saga ``saga_id`` and found neither
    its events nor its index row."""
    if saga_id is not None and report.ok and report.sagas == 0:
        raise SagaNotFound(f"no saga has id {saga_id!r}")
    return report


def parked_reason(data: Any) -> str | None:
    """The reason in a ``SagaParked`` event's data (``None``: not parked)."""
    reason = data.get("reason") if isinstance(data, dict) else None
    return reason if isinstance(reason, str) else None

"""The read side computed from a saga's events: every saga found with ``find``, read with
``load``, and its attempts projected in Python (:func:`saga.attempts.project`, the one attempt
projection, whose outcomes the SQL stores' attempts table keeps too).

For a store with no query language of its own: the in-memory store, or an
application's own :class:`~saga.store.EventLog`, which gets the whole read
side by subclassing :class:`ScanReads`. Each question reads every saga, so it
costs time in proportion to the log; the answers are those of the SQL stores.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

from saga.attempts import Attempt, project
from saga.store import audit
from saga.store.base import EventLog, SagaSummary, StoredEvent
from saga.store.hashing import HASH_VERSION
from saga.store.reads import (
    HEAD_WAIT,
    PERCENTILES,
    AuditReport,
    ExportRow,
    Head,
    SagaCounts,
    SagaPage,
    SagaRow,
    Stats,
    StepStats,
    check_listing,
    encode_cursor,
    nearest_rank,
    parked_reason,
    reported,
    wanted_head,
)

__all__ = ["ScanReads"]

_ENDED = ("completed", "compensated", "failed")
_OUTCOME_FIGURE = {"succeeded": "successes", "failed": "failures", "timed_out": "timeouts",
                   "lost": "lost"}


class ScanReads(EventLog):
    """The read side of :class:`~saga.store.EventLog` from :meth:`find` and :meth:`load` (a
    base for a store that leaves the write side to its subclass)."""

    def _index_rows(self) -> list[SagaSummary]:
        """Every saga's index row, in code point order of their ids."""
        return sorted(self.find(limit=sys.maxsize), key=lambda s: s.saga_id)

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
        after = check_listing(status, limit, cursor)
        found: list[tuple[tuple[float, str], SagaRow]] = []
        for s in self._index_rows():
            key = (s.created_at.timestamp(), s.saga_id)
            if (status is not None and s.status.value != status) or (name is not None and s.name != name) \
                    or (since is not None and s.created_at < since) \
                    or (until is not None and s.created_at >= until) or (after is not None and key >= after):
                continue
            loaded = self.load(s.saga_id)
            failed = [e.data["step"] for e in loaded if e.type == "StepFailed"]
            if failed_step is not None and (not failed or failed[-1] != failed_step):
                continue
            if error_type is not None and not any(
                e.type in ("StepAttemptFailed", "CompensationAttemptFailed")
                and e.data.get("error_type") == error_type for e in loaded
            ):
                continue
            last = loaded[-1] if loaded else None
            found.append((key, SagaRow(s.saga_id, s.name, s.version, s.status.value, s.created_at,
                                       s.updated_at, failed[-1] if failed else None,
                                       parked_reason(last.data if last and last.type == "SagaParked"
                                                     else None))))
        found.sort(key=lambda kr: kr[0], reverse=True)
        page = found[:limit]
        more = len(found) > limit
        return SagaPage([r for _, r in page], encode_cursor(*page[-1][0]) if more else None)

    def stats(self, *, name: str | None = None, since: datetime | None = None,
              top: int = 10) -> Stats:
        sagas: dict[str, Counter[str]] = {}
        figures: dict[str, Counter[str]] = {}
        durations: dict[str, list[float]] = {}
        errors: Counter[str] = Counter()
        for s in self._index_rows():
            if name is not None and s.name != name:
                continue
            if since is None or s.created_at >= since:
                bucket = s.status.value if s.status.value in _ENDED else "running"
                sagas.setdefault(s.name, Counter())[bucket] += 1
            for a in self._attempts(s.saga_id):
                # an attempt counts from its recorded start, as the attempts table keeps it
                if a.started_at is None or (since is not None and a.started_at < since):
                    continue
                if a.error_type is not None:
                    errors[a.error_type] += 1
                if a.compensation:
                    continue
                key = f"{s.name}/{a.step}"
                counted = figures.setdefault(key, Counter())
                counted["attempts"] += 1
                if a.outcome in _OUTCOME_FIGURE:
                    counted[_OUTCOME_FIGURE[a.outcome]] += 1
                if a.duration is not None:
                    durations.setdefault(key, []).append(a.duration)
        steps = {key: _step(counted, sorted(durations.get(key, [])))
                 for key, counted in sorted(figures.items())}
        return Stats(
            {n: SagaCounts(**c) for n, c in sorted(sagas.items())},
            steps,
            sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))[:max(top, 0)],
        )

    def _attempts(self, saga_id: str) -> list[Attempt]:
        return project((e.seq, e.event, e.data) for e in self.load(saga_id))

    def export(self, *, since: datetime | None = None, batch: int = 1000) -> Iterator[ExportRow]:
        found = [e for s in self._index_rows() for e in self.load(s.saga_id)
                 if since is None or e.recorded_at >= since]
        if all(e.position is not None for e in found):
            found.sort(key=lambda e: e.position or 0)
        else:  # a store that numbers no positions: by recording time
            found.sort(key=lambda e: (e.recorded_at, e.saga_id, e.seq))
        for e in found:
            yield ExportRow(e.saga_id, e.seq, e.type, e.recorded_at, e.data, e.hash)

    def verify(self, saga_id: str | None = None, *, head: str | Head | None = None) -> AuditReport:
        wanted = wanted_head(head, saga_id)
        sagas = [s for s in self._index_rows() if saga_id is None or s.saga_id == saga_id]
        rows = (_audit_row(e) for s in sagas for e in self.load(s.saga_id))
        return reported(audit.verify(rows, sagas=sagas, head=wanted), saga_id)

    def head(self, *, wait: float = HEAD_WAIT) -> Head:
        built = audit.HeadBuilder()
        top = 0
        for s in self._index_rows():
            last = self.load(s.saga_id, after=max(s.last_seq - 1, 0))
            if last:
                built.add(s.saga_id, last[-1].seq, last[-1].hash)
                top = max(top, last[-1].position or 0)
        return built.head(top)


def _step(counted: Counter[str], durations: list[float]) -> StepStats:
    """One step's figures from its counts and its sorted durations."""
    n = len(durations)
    p50, p95, p99 = (durations[nearest_rank(p, n) - 1] if n else None for p in PERCENTILES)
    return StepStats(counted["attempts"], counted["successes"], counted["failures"],
                     counted["timeouts"], counted["lost"], p50, p95, p99)


def _audit_row(e: StoredEvent) -> audit.AuditRow:
    # a store without SQL writes the current hash version only
    return audit.AuditRow(e.saga_id, e.seq, e.type, e.schema_version, e.data, e.hash,
                          e.recorded_at.timestamp(), HASH_VERSION, e.position or 0)

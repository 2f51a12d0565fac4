"""What an append writes beside its events: each event's chained hash, the attempts it starts
or ends (rows of ``saga_attempts``), and the step whose failure it records.

Pure functions of the events being appended, shared by every backend, plus the
small cache of the last hash of recently written sagas that spares a read
before most appends.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from saga import events as ev
from saga.store.hashing import event_hash

__all__ = ["AttemptRows", "HashCache", "attempt_rows", "chain", "failed_step_of"]

V = TypeVar("V")


def chain(rows: Sequence[dict[str, Any]], datas: Sequence[Any], previous: str | None) -> str | None:
    """Set ``row["hash"]`` on each event row (``saga_id``, ``seq``, ``type``, ``schema_version``,
    ``recorded_at``; ``datas``: the events' data as JSON values), chained from ``previous``, as
    hash version :data:`~saga.store.hashing.HASH_VERSION`; returns the last hash."""
    for row, data in zip(rows, datas, strict=True):
        previous = row["hash"] = event_hash(row["saga_id"], row["seq"], row["type"],
                                            row["schema_version"], data, previous,
                                            row["recorded_at"])
    return previous


AttemptRows = tuple[list[dict[str, Any]], list[dict[str, Any]]]
"""Rows of ``saga_attempts`` to write (attempts started, ended or not) and to end (started before)."""


def attempt_rows(saga_id: str, batch: Sequence[ev.Event]) -> AttemptRows:
    """The attempts ``batch`` starts (whole rows, ended too if it ends them) and the attempts it
    ends that earlier appends started (keyed rows with the outcome), as
    :func:`saga.inspection.stats.attempts_from_events` derives them from the events."""
    started: dict[tuple[bool, str, int], dict[str, Any]] = {}
    ended: list[dict[str, Any]] = []
    for e in batch:
        if isinstance(e, ev.StepAttemptStarted | ev.CompensationAttemptStarted):
            key = (isinstance(e, ev.CompensationAttemptStarted), e.step, e.attempt)
            started[key] = {
                "saga_id": saga_id, "compensation": key[0], "step": e.step, "attempt": e.attempt,
                "started_at": e.at.timestamp(), "ended_at": None, "duration": None,
                "outcome": "running", "error_type": None,
            }
            continue
        if isinstance(e, ev.StepSucceeded | ev.StepCompensated):
            key = (isinstance(e, ev.StepCompensated), e.step, e.attempt)
            outcome, error_type, lost = "succeeded", None, False
        elif isinstance(e, ev.StepAttemptFailed | ev.CompensationAttemptFailed):
            key = (isinstance(e, ev.CompensationAttemptFailed), e.step, e.attempt)
            outcome = "timed_out" if e.timed_out else "lost" if e.lost else "failed"
            error_type, lost = e.error_type, e.lost
        else:
            continue
        end = {"ended_at": e.at.timestamp(), "outcome": outcome, "error_type": error_type,
               "lost": lost}
        row = started.get(key)
        if row is not None:
            row.update(end, duration=None if lost else end["ended_at"] - row["started_at"])
            del row["lost"]
        else:
            ended.append({"saga_id": saga_id, "compensation": key[0], "step": key[1],
                          "attempt": key[2], **end})
    return list(started.values()), ended


def failed_step_of(batch: Sequence[ev.Event]) -> str | None:
    """The step of the last ``StepFailed`` in ``batch`` (``None``: there is none)."""
    found = None
    for e in batch:
        if isinstance(e, ev.StepFailed):
            found = e.step
    return found


class HashCache(Generic[V]):
    """The last hash (or another fact) of recently written or read sagas, keyed by saga id
    and ``seq``.

    What holds at a given ``seq`` never changes (the log is append-only), so a
    hit is always right; a miss costs the caller one read. Bounded: when full
    it starts over.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._last: dict[str, tuple[int, V]] = {}

    def get(self, saga_id: str, seq: int) -> V | None:
        """What is known of ``saga_id`` at its event ``seq``."""
        found = self._last.get(saga_id)
        return found[1] if found is not None and found[0] == seq else None

    def put(self, saga_id: str, seq: int, value: V | None) -> None:
        """Remember ``value`` for ``saga_id``'s event ``seq`` (``None``: nothing)."""
        if value is None:
            return
        with self._lock:
            if len(self._last) >= self._size and saga_id not in self._last:
                self._last.clear()
            current = self._last.get(saga_id)
            if current is None or current[0] <= seq:
                self._last[saga_id] = (seq, value)

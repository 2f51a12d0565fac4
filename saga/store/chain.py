"""What an append writes beside its events: each event's chained hash and the step whose failure
it records; and the attempts a run of events starts or ends (rows of ``saga_attempts``, which
the projector writes: :mod:`saga.store.projection`).

Pure functions of the events being appended, shared by every backend, plus the
small cache of the last hash of recently written sagas that spares a read
before most appends.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from saga import events as ev
from saga.attempts import project
from saga.store.hashing import stored_event_hash

__all__ = ["AttemptRows", "HashCache", "attempt_rows", "chain", "failed_step_of"]

V = TypeVar("V")


def chain(rows: Sequence[dict[str, Any]], previous: str | None) -> str | None:
    """Set ``row["hash"]`` on each event row (``saga_id``, ``seq``, ``type``, ``schema_version``,
    ``data``: the JSON text stored, ``recorded_at``), chained from ``previous``, as hash version
    :data:`~saga.store.hashing.HASH_VERSION`; returns the last hash."""
    for row in rows:
        previous = row["hash"] = stored_event_hash(row["saga_id"], row["seq"], row["type"],
                                                   row["schema_version"], row["data"], previous,
                                                   row["recorded_at"])
    return previous


AttemptRows = tuple[list[dict[str, Any]], list[dict[str, Any]]]
"""Rows of ``saga_attempts`` to write (attempts started, ended or not) and to end (started before)."""


def attempt_rows(saga_id: str, batch: Sequence[ev.Event]) -> AttemptRows:
    """The attempts ``batch`` starts (whole rows, ended too if it ends them) and the attempts it
    ends that earlier appends started (keyed rows with the outcome, and ``lost``: the row's
    duration is ``NULL``), each as :func:`saga.attempts.project` reads it (times and
    durations in seconds; a duration is the difference of the two times in seconds, as the
    database computes it when the end comes in a later batch, so that where the events are
    cut makes no difference)."""
    started: dict[tuple[str, bool, int], dict[str, Any]] = {}
    ended: list[dict[str, Any]] = []
    for a in project((0, e, None) for e in batch):
        key = {"saga_id": saga_id, "compensation": a.compensation, "step": a.step, "attempt": a.attempt}
        end = {"ended_at": _seconds(a.ended_at), "outcome": a.outcome, "error_type": a.error_type}
        if a.started_at is None:  # started by an earlier append
            ended.append({**key, **end, "lost": a.outcome == "lost"})
        else:  # a start the batch repeats is written once, as the last one says
            # the duration as a difference of the stored times, as when the end comes later
            start = a.started_at.timestamp()
            ended_at = _seconds(a.ended_at)
            duration = None if a.duration is None or ended_at is None else ended_at - start
            started[a.step, a.compensation, a.attempt] = {
                **key, "started_at": start, **end, "duration": duration}
    return list(started.values()), ended


def _seconds(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


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

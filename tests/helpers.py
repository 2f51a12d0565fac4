"""Helpers shared by the tests: reading a log back, checking the guarantees on it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from saga import EventStore, StoredEvent
from saga import events as ev


class WorkerDied(BaseException):
    """Raised by a step to stand in for its process dying mid-attempt.

    It is not an ``Exception``, so the coordinator does not record an outcome:
    the log is left with an attempt started and never finished, as a killed
    worker leaves it.
    """


@contextmanager
def open_store(url: str) -> Iterator[EventStore]:
    """An event store on ``url``, closed afterwards."""
    store = EventStore(url)
    try:
        yield store
    finally:
        store.close()


def loose(value: object) -> Any:
    """``value`` typed as ``Any``: for tests that pass deliberately wrong types."""
    return value



def types(store: EventStore, saga_id: str) -> list[str]:
    """The event types of a saga's log, in order."""
    return [e.type for e in store.load(saga_id)]


def of_type(store: EventStore, saga_id: str, type_: str) -> list[StoredEvent]:
    """The saga's events of one type, in order."""
    return [e for e in store.load(saga_id) if e.type == type_]


def snapshot(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every row of both tables, to check that an operation wrote nothing."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            events = [tuple(r) for r in conn.execute(sa.text(
                "SELECT saga_id, seq, type, data FROM saga_events ORDER BY saga_id, seq"))]
            sagas = [tuple(r) for r in conn.execute(sa.text(
                "SELECT * FROM sagas ORDER BY saga_id"))]
    finally:
        engine.dispose()
    return events, sagas


@dataclass(frozen=True, slots=True)
class Logged:
    """One event of a log with its position, for the invariant checks."""

    seq: int
    event: ev.Event


def logged(history: Sequence[StoredEvent]) -> list[Logged]:
    """A stored history as :class:`Logged` entries."""
    return [Logged(e.seq, e.event) for e in history]


def check_log_invariants(log: Sequence[Logged], step_order: Sequence[str]) -> None:
    """Assert DESIGN.md's guarantees on one saga's log.

    ``step_order`` is the definition's step names in order. Checks: ``seq``
    contiguous from 1; the log starts with ``SagaStarted``; no forward attempt
    starts once compensation has begun, or at or after the saga deadline; a
    compensation runs only for a step that succeeded or is in doubt;
    compensations run newest first; no retry starts before its recorded
    ``next_attempt_at``; a gave-up compensation restarts only after an
    operator's retry; nothing follows a terminal event but an operator's retry (or a
    ``SagaForked``). A skipped or copied step counts as succeeded.
    """
    assert [e.seq for e in log] == list(range(1, len(log) + 1)), "seq is not contiguous from 1"
    assert log and isinstance(log[0].event, ev.SagaStarted)
    deadline = log[0].event.deadline
    index = {name: i for i, name in enumerate(step_order)}
    compensating = False
    succeeded: set[str] = set()
    in_doubt: set[str] = set()
    last_failure: dict[tuple[str, bool], ev.StepAttemptFailed | ev.CompensationAttemptFailed] = {}
    retry_requested = False
    last_comp_index: int | None = None
    terminal = False
    for item in log[1:]:
        e = item.event
        if isinstance(e, ev.SagaForked):
            continue  # names a fork; may follow anything, changes nothing
        if terminal:
            assert isinstance(e, ev.SagaRetryRequested), f"{type(e).__name__} after a terminal event"
            terminal = False
        match e:
            case ev.StepAttemptStarted():
                assert not compensating, f"forward attempt of {e.step} after CompensationStarted"
                assert deadline is None or e.at < deadline, "forward attempt at or after the deadline"
                _check_retry_time(last_failure.get((e.step, False)), e.at, e.attempt, False)
            case ev.CompensationAttemptStarted():
                assert compensating, "compensation attempt before CompensationStarted"
                assert e.step in succeeded or e.step in in_doubt, (
                    f"compensation of {e.step}, which neither succeeded nor is in doubt"
                )
                if last_comp_index is not None:
                    assert index[e.step] <= last_comp_index, "compensations not newest first"
                last_comp_index = index[e.step]
                previous = last_failure.get((e.step, True))
                if previous is not None and not previous.retried:
                    assert retry_requested, "a gave-up compensation restarted without a retry"
                    retry_requested = False
                else:
                    _check_retry_time(previous, e.at, e.attempt, True)
            case ev.StepAttemptFailed() | ev.CompensationAttemptFailed():
                comp = isinstance(e, ev.CompensationAttemptFailed)
                last_failure[(e.step, comp)] = e
                assert e.retried == (e.next_attempt_at is not None)
                assert e.retried == (e.gave_up is None)
                if e.retried:
                    assert e.next_attempt_at is not None and e.next_attempt_at >= e.at
                if not comp and (e.timed_out or e.lost):
                    in_doubt.add(e.step)
            case ev.StepSucceeded() | ev.StepSkipped() | ev.StepCopied():
                succeeded.add(e.step)
            case ev.CompensationStarted():
                assert not compensating, "CompensationStarted twice"
                compensating = True
            case ev.SagaRetryRequested():
                retry_requested = True
            case ev.SagaCompleted() | ev.SagaCompensated() | ev.SagaFailed():
                terminal = True
            case _:
                pass


def _check_retry_time(
    previous: ev.StepAttemptFailed | ev.CompensationAttemptFailed | None,
    at: datetime,
    attempt: int,
    compensation: bool,
) -> None:
    kind = "compensation" if compensation else "step"
    if previous is None:
        assert attempt == 1, f"{kind} attempt {attempt} without a failed attempt before it"
        return
    assert attempt == previous.attempt + 1, f"{kind} attempts not numbered one by one"
    assert previous.retried, f"{kind} attempt {attempt} after its policy gave up"
    assert previous.next_attempt_at is not None and at >= previous.next_attempt_at, (
        f"{kind} attempt {attempt} started at {at}, before its recorded {previous.next_attempt_at}"
    )

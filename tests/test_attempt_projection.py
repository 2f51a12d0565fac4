"""One attempt projection: what the store keeps in ``saga_attempts``, the SQL that derives
attempts from the events, the data timeline and the statistics all say what
:func:`saga.attempts.project` says of the same events, on random histories written to
SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saga import EventStore, SagaStatus
from saga import events as ev
from saga.attempts import Attempt, project
from saga.calls import Call, CallError
from saga.inspection.history import timeline
from saga.inspection.stats import attempts_from_events
from saga.store.loading import BulkSaga, write_sagas
from saga.store.reads import PERCENTILES, Stats, nearest_rank
from saga.store.schema import attempts
from saga.store.sql import SqlEventStore
from saga.store.sqlstats import compute_stats

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
STEPS = ("reserve", "charge", "ship")
ERRORS = ("ConnectionError", "ValueError", "AttemptTimedOut")
ENDS = ("succeeded", "failed", "timed_out", "lost", "timed_out_and_lost")
"""How a generated attempt ends; the last also marks a failure both timed out and lost, which
only a log written by hand holds: the rule says ``timed_out``, with a duration."""

_ids = itertools.count()


@dataclass(frozen=True)
class Plan:
    """Attempts of a generated history: ``repeat`` alike in a row (a run the text timeline
    summarises, if long enough)."""

    step: str
    compensation: bool
    end: str
    error: str
    retried: bool
    took: int  # microseconds from start to outcome
    gap: int  # microseconds before the next event
    cancel_while_running: bool  # an operator's event between the attempt's start and its outcome
    with_call: bool
    cut_after_start: bool  # the outcome is appended later than the start
    repeat: int = 1


plans = st.builds(
    Plan,
    step=st.sampled_from(STEPS),
    compensation=st.booleans(),
    end=st.sampled_from(ENDS),
    error=st.sampled_from(ERRORS),
    retried=st.booleans(),
    took=st.integers(1, 10**8),
    gap=st.integers(1, 10**9),
    cancel_while_running=st.booleans(),
    with_call=st.booleans(),
    cut_after_start=st.booleans(),
    repeat=st.integers(1, 7),
)


def outcome(p: Plan, n: int, at: datetime) -> ev.Event:
    """The event that ends attempt ``n`` of plan ``p`` at ``at``."""
    ok = p.end == "succeeded"
    calls = (Call(adapter="http", target="http://svc/x", outcome="ok" if ok else "error",
                  error=None if ok else CallError(type=p.error, message="m", status=503),
                  started_at=at, duration=0.25),) if p.with_call else ()
    if ok:
        return (ev.StepCompensated(step=p.step, attempt=n, calls=calls, at=at) if p.compensation
                else ev.StepSucceeded(step=p.step, attempt=n, result={"n": n}, calls=calls, at=at))
    fail_type = ev.CompensationAttemptFailed if p.compensation else ev.StepAttemptFailed
    return fail_type(
        step=p.step, attempt=n, at=at, error_type=p.error, message=f"{p.error} at the service",
        timed_out=p.end.startswith("timed_out"), lost=p.end.endswith("lost"), retried=p.retried,
        next_attempt_at=at + timedelta(seconds=n) if p.retried else None,
        gave_up=None if p.retried else "attempts", calls=calls)


def history(name: str, items: list[Plan], last_running: bool, cuts: list[bool]
            ) -> list[list[ev.Event]]:
    """The events of a saga ``name`` doing ``items`` (the last still running if
    ``last_running``), at increasing times, cut into appends: between a start and its outcome
    where the plan says so, and after each other event where ``cuts`` (cycled) says."""
    at = T0
    numbers: Counter[tuple[str, bool]] = Counter()
    appends: list[list[ev.Event]] = [[ev.SagaStarted(name=name, version=1, input={"n": 1}, at=at)]]
    cut = itertools.cycle(cuts or [False])

    def add(e: ev.Event, *, new_append: bool = False) -> None:
        if new_append or next(cut):
            appends.append([])
        appends[-1].append(e)

    runs = [p for p in items for _ in range(p.repeat)]
    for i, p in enumerate(runs):
        numbers[p.step, p.compensation] += 1
        n = numbers[p.step, p.compensation]
        start_type = ev.CompensationAttemptStarted if p.compensation else ev.StepAttemptStarted
        add(start_type(step=p.step, attempt=n, at=at))
        if p.cancel_while_running:
            add(ev.SagaCancelRequested(reason="operator", at=at + timedelta(microseconds=p.took // 2)))
        at += timedelta(microseconds=p.took)
        if last_running and i == len(runs) - 1:
            break
        add(outcome(p, n, at), new_append=p.cut_after_start)
        if not p.retried and p.end != "succeeded" and not p.compensation:
            add(ev.StepFailed(step=p.step, reason="gave up", at=at))
        at += timedelta(microseconds=p.gap)
    return [batch for batch in appends if batch]


def expected(events: list[ev.Event]) -> list[Attempt]:
    """The attempts of ``events``, by the one projection."""
    return project((seq, e, e.to_data()) for seq, e in enumerate(events, 1))


def as_rows(found: list[Attempt], name: str) -> dict[tuple[bool, str, int], dict[str, Any]]:
    """The projection's attempts as rows of ``saga_attempts`` would say them."""
    return {(a.compensation, a.step, a.attempt): {
        "name": name,
        "started_at": pytest.approx(a.started_at.timestamp(), abs=1e-5) if a.started_at else None,
        "ended_at": pytest.approx(a.ended_at.timestamp(), abs=1e-5) if a.ended_at else None,
        "duration": None if a.duration is None else pytest.approx(a.duration, abs=1e-5),
        "outcome": a.outcome, "error_type": a.error_type,
    } for a in found}


def rows_in(conn: sa.Connection, src: sa.FromClause, saga_id: str
            ) -> dict[tuple[bool, str, int], dict[str, Any]]:
    """The attempts of ``saga_id`` in ``src`` (a table or a query with the attempt columns)."""
    stmt = sa.select(src.c.compensation, src.c.step, src.c.attempt, src.c.name, src.c.started_at,
                     src.c.ended_at, src.c.duration, src.c.outcome, src.c.error_type
                     ).where(src.c.saga_id == saga_id)
    return {(bool(r.compensation), r.step, r.attempt): {
        "name": r.name, "started_at": _float(r.started_at), "ended_at": _float(r.ended_at),
        "duration": _float(r.duration), "outcome": r.outcome, "error_type": r.error_type,
    } for r in conn.execute(stmt)}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)  # PostgreSQL's EXTRACT gives a decimal


def check_stats(stats: Stats, name: str, found: list[Attempt]) -> None:
    """The per-step figures and the top errors of ``stats`` count what ``found`` holds."""
    by_step: dict[str, list[Attempt]] = {}
    for a in found:
        if not a.compensation:
            by_step.setdefault(f"{name}/{a.step}", []).append(a)
    assert set(stats.steps) == set(by_step)
    for key, group in by_step.items():
        st_ = stats.steps[key]
        outcomes = Counter(a.outcome for a in group)
        assert (st_.attempts, st_.successes, st_.failures, st_.timeouts, st_.lost) == (
            len(group), outcomes["succeeded"], outcomes["failed"], outcomes["timed_out"],
            outcomes["lost"]), key
        durations = sorted(a.duration for a in group if a.duration is not None)
        want = [durations[nearest_rank(q, len(durations)) - 1] if durations else None for q in PERCENTILES]
        got = [st_.p50, st_.p95, st_.p99]
        assert got == [None if w is None else pytest.approx(w, abs=1e-5) for w in want], key
    errors = Counter(a.error_type for a in found if a.error_type is not None)
    assert stats.top_errors == sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))[:10]


@pytest.fixture
def sql_store(sql_url: str) -> Iterator[SqlEventStore]:
    """One store on a fresh SQL database for every example of a test (each its own saga name)."""
    store = EventStore(sql_url)
    assert isinstance(store, SqlEventStore)
    yield store
    store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(plans, min_size=1, max_size=8), last_running=st.booleans(),
       cuts=st.lists(st.booleans(), max_size=8))
def test_every_reader_of_attempts_agrees_with_the_projection(
    sql_store: SqlEventStore, items: list[Plan], last_running: bool, cuts: list[bool]
) -> None:
    n = next(_ids)
    name, saga_id, bulk_id = f"projected-{n}", f"appended-{n}", f"loaded-{n}"
    appends = history(name, items, last_running, cuts)
    events = [e for batch in appends for e in batch]
    found = expected(events)
    assert len(found) == sum(p.repeat for p in items)

    # (a) the rows the appends kept, and the rows a bulk load writes
    status, now = SagaStatus.RUNNING, events[-1].at
    sql_store.create(saga_id, appends[0], name=name, version=1, status=status, wake_at=None, now=T0)
    seq = len(appends[0])
    for batch in appends[1:]:
        sql_store.append(saga_id, seq, batch, status=status, wake_at=None, now=now)
        seq += len(batch)
    write_sagas(sql_store, [BulkSaga(bulk_id, name, 1, status, events)])
    want = as_rows(found, name)
    sql_store.catch_up()
    with sql_store.engine.connect() as conn:
        assert rows_in(conn, attempts, saga_id) == want
        assert rows_in(conn, attempts, bulk_id) == want
        # (b) the SQL that derives attempts from the events alone
        derived = attempts_from_events()
        assert rows_in(conn, derived, saga_id) == want
        assert rows_in(conn, derived, bulk_id) == want
        from_events = compute_stats(conn, name=name)

    # (c) the data timeline, read back from the store
    stored = sql_store.load(saga_id)
    assert [s.event for s in stored] == events
    assert list(timeline(saga_id, stored).attempts) == found

    # (d) the statistics, from the table and from the events (the saga and its bulk copy)
    check_stats(sql_store.stats(name=name), name, found * 2)
    check_stats(from_events, name, found * 2)

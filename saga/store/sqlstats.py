"""Statistics in SQL, the same statements on SQLite and PostgreSQL: every figure of
:class:`~saga.store.reads.Stats` is an aggregate the database computes; no event is loaded
into Python.

Attempts are read from a source with one row per attempt (``saga_id``,
``name``, ``step``, ``compensation``, ``attempt``, ``started_at``,
``ended_at``, ``duration``, ``outcome``, ``error_type``): the table
``saga_attempts`` (a projection of the log: :mod:`saga.store.projection`), or the same rows
derived from the events alone (:func:`attempts_from_events`), or anything with those columns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from saga.store.reads import PERCENTILES, SagaCounts, Stats, StepStats, nearest_rank
from saga.store.schema import attempts as attempts_table
from saga.store.schema import events, sagas
from saga.store.statements import epoch as _epoch

__all__ = [
    "ATTEMPT_COLUMNS", "attempts_from_events", "compute_stats", "nth_duration_query",
    "saga_counts_query", "step_counts_query", "top_errors_query",
]


_STARTED = "StepAttemptStarted"
_FAILED = "StepAttemptFailed"
_SUCCEEDED = "StepSucceeded"
_COMP_STARTED = "CompensationAttemptStarted"
_COMP_FAILED = "CompensationAttemptFailed"
_COMPENSATED = "StepCompensated"


ATTEMPT_COLUMNS = ("saga_id", "name", "step", "compensation", "attempt", "started_at", "ended_at",
                   "duration", "outcome", "error_type")
"""The columns of an attempts source: one row per attempt (see :func:`attempts_from_events`)."""


def attempts_from_events() -> sa.Subquery:
    """One row per attempt, derived from the events table by window functions.

    Columns as :data:`ATTEMPT_COLUMNS`: the saga's ``name``; ``compensation``
    (bool); ``started_at``/``ended_at`` in seconds since the epoch, from the
    events' ``at`` (the coordinator's clock, as the timeline shows; ``ended_at`` is
    ``NULL`` while running); ``outcome`` (``succeeded``, ``failed``,
    ``timed_out``, ``lost`` or ``running``); ``duration`` in seconds of an
    attempt that succeeded, failed or timed out (``NULL`` for lost and running
    ones); ``error_type`` of a failure.
    Attempts of one saga run one at a time, so an attempt's outcome is the
    next attempt event of its saga. A table with these columns, kept by the
    store on append, answers the same statements without the windows.
    """
    types = (_STARTED, _COMP_STARTED, _FAILED, _COMP_FAILED, _SUCCEEDED, _COMPENSATED)
    data = events.c.data

    def lead(value: sa.ColumnElement[Any]) -> sa.Over[Any]:
        return sa.func.lead(value).over(partition_by=events.c.saga_id, order_by=events.c.seq)

    rows = (
        sa.select(
            events.c.saga_id, events.c.type, _epoch(data["at"].as_string()).label("at"),
            data["step"].as_string().label("step"),
            data["attempt"].as_integer().label("attempt"),
            lead(events.c.type).label("next_type"),
            lead(_epoch(data["at"].as_string())).label("next_at"),
            lead(data["timed_out"].as_boolean()).label("next_timed_out"),
            lead(data["lost"].as_boolean()).label("next_lost"),
            lead(data["error_type"].as_string()).label("next_error_type"),
        )
        .where(events.c.type.in_(types))
        .subquery("attempt_events")
    )
    ended = rows.c.next_type.in_((_FAILED, _COMP_FAILED, _SUCCEEDED, _COMPENSATED))
    failed = rows.c.next_type.in_((_FAILED, _COMP_FAILED))
    outcome = sa.case(
        (rows.c.next_type.in_((_SUCCEEDED, _COMPENSATED)), "succeeded"),
        (sa.and_(failed, sa.func.coalesce(rows.c.next_timed_out, sa.false())), "timed_out"),
        (sa.and_(failed, sa.func.coalesce(rows.c.next_lost, sa.false())), "lost"),
        (failed, "failed"),
        else_="running",
    )
    return (
        sa.select(
            rows.c.saga_id, sagas.c.name, rows.c.step,
            (rows.c.type == _COMP_STARTED).label("compensation"),
            rows.c.attempt,
            rows.c.at.label("started_at"),
            sa.case((ended, rows.c.next_at)).label("ended_at"),
            sa.case((sa.and_(ended, outcome != "lost"), rows.c.next_at - rows.c.at)).label("duration"),
            outcome.label("outcome"),
            sa.case((failed, rows.c.next_error_type)).label("error_type"),
        )
        .select_from(rows.join(sagas, sagas.c.saga_id == rows.c.saga_id))
        .where(rows.c.type.in_((_STARTED, _COMP_STARTED)))
        .subquery("attempts")
    )


def _count(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)


def _attempt_scope(
    src: sa.FromClause, name: str | None, since: datetime | None
) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if name is not None:
        where.append(src.c.name == name)
    if since is not None:
        where.append(src.c.started_at >= since.timestamp())
    return where


def saga_counts_query(name: str | None = None, since: datetime | None = None) -> sa.Select[Any]:
    """``(name, status, count)`` of sagas in scope (``since``: started at or after)."""
    where: list[sa.ColumnElement[bool]] = []
    if name is not None:
        where.append(sagas.c.name == name)
    if since is not None:
        where.append(sagas.c.created_at >= since.timestamp())
    return (sa.select(sagas.c.name, sagas.c.status, sa.func.count())
            .where(*where).group_by(sagas.c.name, sagas.c.status))


def step_counts_query(
    src: sa.FromClause, name: str | None = None, since: datetime | None = None
) -> sa.Select[Any]:
    """``(name, step, attempts, successes, failures, timeouts, lost, timed)`` per step (forward
    attempts; ``timed``: how many have a duration)."""
    return (
        sa.select(
            src.c.name, src.c.step, sa.func.count(),
            _count(src.c.outcome == "succeeded"), _count(src.c.outcome == "failed"),
            _count(src.c.outcome == "timed_out"), _count(src.c.outcome == "lost"),
            sa.func.count(src.c.duration),
        )
        .where(src.c.compensation == sa.false(), *_attempt_scope(src, name, since))
        .group_by(src.c.name, src.c.step)
    )


def nth_duration_query(
    src: sa.FromClause, name: str, step: str, rank: int, since: datetime | None = None
) -> sa.Select[Any]:
    """The ``rank``-th (from 1) shortest duration of a step's forward attempts.

    With an index on ``(compensation, name, step, duration, ...)`` this walks the
    index only, which is why percentiles are read one rank at a time instead
    of ranking every attempt with a window function.
    """
    return (
        sa.select(src.c.duration)
        .where(src.c.compensation == sa.false(), src.c.name == name, src.c.step == step,
               src.c.duration.is_not(None), *_attempt_scope(src, None, since))
        .order_by(src.c.duration)
        .offset(rank - 1)
        .limit(1)
    )


def top_errors_query(
    src: sa.FromClause, name: str | None = None, since: datetime | None = None, *, limit: int = 10
) -> sa.Select[Any]:
    """``(error_type, count)`` of failed attempts in scope (forward and compensation), commonest first."""
    n = sa.func.count().label("n")
    return (
        sa.select(src.c.error_type, n)
        .where(src.c.error_type.is_not(None), *_attempt_scope(src, name, since))
        .group_by(src.c.error_type)
        .order_by(n.desc(), src.c.error_type)
        .limit(limit)
    )


def compute_stats(
    conn: sa.Connection,
    *,
    name: str | None = None,
    since: datetime | None = None,
    top: int = 10,
    attempts: sa.FromClause = attempts_table,
) -> Stats:
    """The statistics in scope, read with aggregate queries on ``conn`` (one snapshot is not
    promised: run it in a transaction of the isolation needed).

    ``attempts`` is where attempts are read: by default the table
    ``saga_attempts``; any source with its columns gives the same figures.
    """
    src = attempts
    counts: dict[str, dict[str, int]] = {}
    for saga_name, status, n in conn.execute(saga_counts_query(name, since)):
        bucket = status if status in ("completed", "compensated", "failed") else "running"
        per_name = counts.setdefault(saga_name, {})
        per_name[bucket] = per_name.get(bucket, 0) + int(n)
    steps: dict[str, StepStats] = {}
    for saga_name, step, started, successes, failures, timeouts, lost, timed in conn.execute(
        step_counts_query(src, name, since)
    ).all():
        p: list[float | None] = [
            float(conn.execute(nth_duration_query(src, saga_name, step, nearest_rank(q, timed), since)
                               ).scalar_one()) if timed else None
            for q in PERCENTILES
        ]
        steps[f"{saga_name}/{step}"] = StepStats(
            int(started), int(successes), int(failures), int(timeouts), int(lost),
            *p,
        )
    top_errors = [(str(t), int(n)) for t, n in conn.execute(top_errors_query(src, name, since, limit=top))]
    return Stats(
        {k: SagaCounts(**v) for k, v in sorted(counts.items())},
        dict(sorted(steps.items())),
        top_errors,
    )

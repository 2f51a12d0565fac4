"""Statistics as ``saga stats`` prints them, and the attempts derived from the events in SQL.

A store computes its statistics itself (:meth:`saga.store.EventLog.stats`,
which returns :class:`~saga.store.reads.Stats`); this module renders them
(:func:`stats_table`), and derives one row per attempt from the events table
alone (:func:`attempts_from_events`), for a log whose attempts table is not
filled yet and for checking that table against the events. Pass it as
``attempts`` to :func:`~saga.store.sqlstats.compute_stats` for the same
figures read that way.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from saga.store.reads import PERCENTILES, SagaCounts, Stats, StepStats, nearest_rank
from saga.store.schema import events, sagas
from saga.store.sqlstats import compute_stats
from saga.store.statements import epoch as _epoch

__all__ = [
    "ATTEMPT_COLUMNS",
    "PERCENTILES",
    "SagaCounts",
    "Stats",
    "StepStats",
    "attempts_from_events",
    "compute_stats",
    "nearest_rank",
    "stats_table",
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


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def stats_table(stats: Stats) -> list[str]:
    """The statistics as lines of text: sagas by outcome, steps by attempts, commonest errors."""
    lines = []
    width = max([4, *(len(n) for n in stats.sagas)])
    lines.append(f"{'saga':<{width}}  {'completed':>9}  {'compensated':>11}  {'failed':>6}  "
                 f"{'running':>7}")
    for name, c in stats.sagas.items():
        lines.append(f"{name:<{width}}  {c.completed:>9}  {c.compensated:>11}  {c.failed:>6}  "
                     f"{c.running:>7}")
    width = max([4, *(len(k) for k in stats.steps)])
    lines += ["", f"{'step':<{width}}  {'attempts':>8}  {'ok':>6}  {'failed':>6}  {'timeout':>7}  "
              f"{'lost':>5}  {'per ok':>6}  {'p50 s':>8}  {'p95 s':>8}  {'p99 s':>8}"]
    for key, st in stats.steps.items():
        ratio = "-" if st.attempts_per_success is None else f"{st.attempts_per_success:.2f}"
        lines.append(f"{key:<{width}}  {st.attempts:>8}  {st.successes:>6}  {st.failures:>6}  "
                     f"{st.timeouts:>7}  {st.lost:>5}  {ratio:>6}  {_seconds(st.p50):>8}  "
                     f"{_seconds(st.p95):>8}  {_seconds(st.p99):>8}")
    lines += ["", "top errors" if stats.top_errors else "top errors: none"]
    lines += [f"{n:>8}  {error_type}" for error_type, n in stats.top_errors]
    return lines

"""Statistics over the log, computed in SQL: which saga ends how, which step is weak, which errors.

Every figure is an aggregate the database computes (SQLAlchemy Core, the same
statements on SQLite and PostgreSQL); no event is loaded into Python.

- Per saga name: how many sagas ``completed``, ``compensated``, ``failed``,
  and are still ``running`` (going forward or compensating).
- Per step, keyed ``"<saga name>/<step>"`` (forward attempts only):
  ``attempts`` started, ``successes``, ``failures`` (errors), ``timeouts``,
  ``lost`` (the worker died first), ``attempts_per_success``, and the
  ``p50``/``p95``/``p99`` of attempt duration in seconds, nearest rank, over
  attempts with a recorded outcome other than lost. A duration runs from the
  attempt's start to its outcome, by the times in the events (the
  coordinator's clock, the same the timeline shows).
- ``top_errors``: ``[error_type, count]`` over every failed attempt, forward
  or compensation, commonest first.

``name`` keeps one saga name; ``since`` keeps sagas started at or after it
(``sagas.created_at``) and attempts started at or after it; both times come
from the coordinator's clock. Attempts are read from a source with one row per attempt: by
default derived from the events with window functions; a table the store
keeps with the same columns answers the same statements faster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from saga.store.schema import events, sagas

__all__ = [
    "ATTEMPT_COLUMNS",
    "PERCENTILES",
    "SagaCounts",
    "Stats",
    "StepStats",
    "attempts_from_events",
    "compute_stats",
    "nearest_rank",
    "nth_duration_query",
    "saga_counts_query",
    "stats_table",
    "step_counts_query",
    "top_errors_query",
]

PERCENTILES = (50, 95, 99)

_STARTED = "StepAttemptStarted"
_FAILED = "StepAttemptFailed"
_SUCCEEDED = "StepSucceeded"
_COMP_STARTED = "CompensationAttemptStarted"
_COMP_FAILED = "CompensationAttemptFailed"
_COMPENSATED = "StepCompensated"


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
    """The statistics ``saga stats`` prints."""

    sagas: dict[str, SagaCounts]
    steps: dict[str, StepStats]
    top_errors: list[tuple[str, int]]

    def to_json(self) -> dict[str, Any]:
        """``{"sagas": {name: counts}, "steps": {"name/step": figures}, "top_errors": [[type, n]]}``."""
        return {"sagas": {k: v.to_json() for k, v in self.sagas.items()},
                "steps": {k: v.to_json() for k, v in self.steps.items()},
                "top_errors": [[t, n] for t, n in self.top_errors]}


ATTEMPT_COLUMNS = ("saga_id", "name", "step", "compensation", "attempt", "started_at", "ended_at",
                   "duration", "outcome", "error_type")
"""The columns of an attempts source: one row per attempt (see :func:`attempts_from_events`)."""


class _Epoch(sa.sql.expression.FunctionElement[float]):
    """Seconds since the epoch of an ISO 8601 text (each database parses it its own way)."""

    type = sa.Float(precision=53)
    inherit_cache = True
    name = "saga_epoch"


@compiles(_Epoch, "sqlite")
def _epoch_sqlite(element: _Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    # strftime('%s') gives whole seconds exactly (julianday() would lose tens of microseconds),
    # of the text without its fraction: SQLite keeps milliseconds, so "36.9997Z" would round up
    # to 37. The fraction after "YYYY-MM-DDTHH:MM:SS" is read as a number ("0" || ".123456Z" ->
    # 0.123456, "0" || "Z" -> 0, "0" || "+02:00" -> 0).
    text = compiler.process(element.clauses, **kw)
    whole = f"substr({text}, 1, 19) || ltrim(substr({text}, 20), '.0123456789')"
    return f"(CAST(strftime('%s', {whole}) AS REAL) + CAST('0' || substr({text}, 20) AS REAL))"


@compiles(_Epoch, "postgresql")
def _epoch_postgresql(element: _Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM CAST({compiler.process(element.clauses, **kw)} AS TIMESTAMPTZ))"


def _epoch(text: sa.ColumnElement[str]) -> _Epoch:
    return _Epoch(text)


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


def nearest_rank(p: int, n: int) -> int:
    """The nearest rank (from 1) of percentile ``p`` among ``n`` values: the smallest r with 100 r >= p n."""
    return max(1, -(-p * n // 100))


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
    attempts: sa.FromClause | None = None,
) -> Stats:
    """The statistics in scope, read with aggregate queries on ``conn`` (one snapshot is not
    promised: run it in a transaction of the isolation needed).

    ``attempts`` is where attempts are read: a table with the columns of
    :data:`ATTEMPT_COLUMNS`, or by default :func:`attempts_from_events`.
    """
    src = attempts_from_events() if attempts is None else attempts
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

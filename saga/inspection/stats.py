"""Statistics as ``saga stats`` prints them.

A store computes its statistics itself (:meth:`saga.store.EventLog.stats`,
which returns :class:`~saga.store.reads.Stats`); this module renders them
(:func:`stats_table`), and names the attempts derived from the events table
alone (:func:`~saga.store.sqlstats.attempts_from_events`): pass them as
``attempts`` to :func:`~saga.store.sqlstats.compute_stats` for the same
figures read without the attempts table.
"""

from __future__ import annotations

from saga.store.reads import PERCENTILES, SagaCounts, Stats, StepStats, nearest_rank
from saga.store.sqlstats import ATTEMPT_COLUMNS, attempts_from_events, compute_stats

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

"""``--from-log``: each step's failure rate and attempt durations, as production's log has them.

The figures are the store's statistics, as ``saga stats`` reads them
(:meth:`saga.store.EventLog.stats`), and the durations come from the same
attempt projection (:mod:`saga.attempts`), so the simulator and the
statistics never disagree about what the log says:

- a step's failure rate is its forward attempts that ended in an error,
  out of those that succeeded or ended in an error (timeouts are left out:
  the simulation makes its own from the durations and the step's timeout);
- its latency is the empirical distribution of the durations of its forward
  attempts that succeeded, failed or timed out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from saga.attempts import project
from saga.definition import Saga
from saga.errors import InvalidInput
from saga.simulate.distributions import Distribution, Empirical
from saga.simulate.intervals import wilson
from saga.simulate.spec import Scenario
from saga.store import EventLog, EventStore, redact
from saga.store.reads import MAX_LIMIT, StepStats
from saga.text import count

__all__ = ["LogProfile", "StepProfile", "read_profile"]


@dataclass(frozen=True, slots=True)
class StepProfile:
    """What the log says of one step's forward attempts."""

    stats: StepStats
    """The step's figures exactly as ``saga stats`` reports them."""
    durations: list[float]
    """Durations of its attempts that succeeded, failed or timed out, in seconds."""

    @property
    def returned(self) -> int:
        """Attempts that succeeded or failed (the failure rate's denominator)."""
        return self.stats.successes + self.stats.failures

    @property
    def fail(self) -> float | None:
        """The share of those attempts that failed (``None``: none returned)."""
        return self.stats.failures / self.returned if self.returned else None

    @property
    def fail_ci(self) -> tuple[float, float]:
        """The failure rate's 95% Wilson interval."""
        return wilson(self.stats.failures, self.returned)

    @property
    def latency(self) -> Distribution | None:
        """The attempt durations as an empirical distribution (``None``: none recorded)."""
        return Empirical(self.durations) if self.durations else None

    def to_json(self) -> dict[str, Any]:
        """``attempts``, ``failures``, ``timeouts``, ``fail`` with its ``ci``, and the
        durations' ``p50``/``p95``/``p99``, as the log has them."""
        s = self.stats
        return {"attempts": s.attempts, "successes": s.successes, "failures": s.failures,
                "timeouts": s.timeouts, "lost": s.lost,
                "fail": {"value": self.fail, "ci": list(self.fail_ci), "n": self.returned},
                "durations": {"n": len(self.durations), "p50": s.p50, "p95": s.p95, "p99": s.p99}}


@dataclass(frozen=True, slots=True)
class LogProfile:
    """The log's figures for one saga's steps (only steps with attempts in the log)."""

    url: str
    since: datetime | None
    steps: Mapping[str, StepProfile]

    def scenario(self, given: Scenario) -> Scenario:
        """``given`` with each step's failure rate and latency taken from the log, unless
        ``given`` sets them itself (a flag on the command line wins)."""
        fail = {k: p.fail for k, p in self.steps.items() if p.fail is not None}
        latency = {k: d for k, p in self.steps.items() if (d := p.latency) is not None}
        return Scenario(fail={**fail, **given.fail}, latency={**latency, **given.latency},
                        replicas=given.replicas, policy=given.policy, timeout=given.timeout)

    def lines(self) -> list[str]:
        """What was read, one line per step, for the table."""
        scope = "" if self.since is None else f" since {self.since.isoformat(timespec='seconds')}"
        out = [f"from the log at {redact(self.url)}{scope}:"]
        for name, p in self.steps.items():
            fail = "-" if p.fail is None else f"{p.fail:.4g} [{p.fail_ci[0]:.4g}, {p.fail_ci[1]:.4g}]"
            p50 = "-" if p.stats.p50 is None else f"{p.stats.p50:.4g}s"
            out.append(f"  {name}: {count(p.stats.attempts, 'attempt')}, fails {fail}, "
                       f"{p.stats.timeouts} timed out, median duration {p50}")
        return out


def _durations(store: EventLog, name: str, since: datetime | None) -> dict[str, list[float]]:
    """The durations of each step's forward attempts (started at or after ``since``) that
    succeeded, failed or timed out, from every saga named ``name``."""
    out: dict[str, list[float]] = {}
    cursor: str | None = None
    while True:
        page = store.list_sagas(name=name, limit=MAX_LIMIT, cursor=cursor)
        for row in page.rows:
            for a in project((e.seq, e.event, e.data) for e in store.load(row.saga_id)):
                if a.compensation or a.duration is None or a.started_at is None \
                        or (since is not None and a.started_at < since):
                    continue
                out.setdefault(a.step, []).append(max(0.0, a.duration))
        if page.cursor is None:
            return out
        cursor = page.cursor


def read_profile(url: str, saga: Saga, *, since: datetime | None = None) -> LogProfile:
    """Read ``saga``'s step figures from the log at ``url``.

    Raises :class:`~saga.InvalidInput` when its log holds no attempt of a step
    of ``saga``, and :class:`~saga.SagaNotFound` when there is no log there;
    opening it writes nothing.
    """
    with EventStore(url, schema="require") as store:
        stats = store.stats(name=saga.name, since=since, top=1)
        durations = _durations(store, saga.name, since)
    steps = {s.name: StepProfile(stats.steps[f"{saga.name}/{s.name}"], durations.get(s.name, []))
             for s in saga.steps if f"{saga.name}/{s.name}" in stats.steps}
    if not steps:
        scope = "" if since is None else f" since {since.isoformat(timespec='seconds')}"
        raise InvalidInput(f"--from-log: the log at {redact(url)} has no attempts of saga "
                           f"{saga.name!r}{scope}")
    return LogProfile(url, since, steps)

"""Driving one saga until it rests: decide, run, append, while holding its lease.

A :class:`Drive` holds a saga's folded state in two parts: the events already
in the log (up to :attr:`Drive.persisted`) and the events it decided but has
not committed yet (:attr:`Drive.pending`). It commits at two points only:

- :meth:`Drive.commit_start`, before an attempt runs: the pending events and
  the attempt's start, taking (or keeping) the lease, so the start is durable
  before the step runs;
- :meth:`Drive.commit_rest`, when the saga rests or waits: the pending events
  (an outcome, a terminal or waiting state), letting the lease go.

A step's outcome therefore shares a commit with the next attempt's start.
Every append names the ``seq`` it follows and re-checks the lease, so when
the log moved on (an operator appended) or an outcome cannot be written as
it is, the append is refused and :meth:`Drive.reload` folds the log again and
records the unrecorded outcome on it: that is the only way back.

A new saga is driven the same way (:meth:`Drive.new`): its start is pending,
and the drive's first commit creates it, so that a saga which starts its first
step is created already leased, with that attempt's start in the same commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from saga import events as ev
from saga import telemetry
from saga._engine.decide import (
    Record,
    Rest,
    StartAttempt,
    Wait,
    attempt_outcome,
    decide,
    idempotency_key,
)
from saga._engine.execution import Outcome, run_attempt, timed_out
from saga._engine.leases import Kept, LeaseKeeper
from saga._engine.reading import load_state
from saga._engine.threads import current_watch, supervised
from saga.calls import CallLog
from saga.clock import Clock
from saga.definition import Compensation, Saga, Step, StepContext
from saga.errors import ConcurrencyError, LeaseHeld, PayloadTooLarge
from saga.secrets.masking import attempt_mask
from saga.secrets.sealing import sealed_target, step_input, step_result, step_results
from saga.state import ErrorInfo, Phase, SagaState
from saga.store.base import EventLog

__all__ = ["Busy", "Drive", "DriveResult", "Driving", "Taken"]

log = logging.getLogger("saga")

_MAX_CONFLICTS = 8


@dataclass(frozen=True, slots=True)
class Busy:
    """Another coordinator holds the saga's lease."""


@dataclass(frozen=True, slots=True)
class Taken:
    """The new saga's id was already in the log: its drive wrote nothing."""


DriveResult = Rest | Wait | Busy | Taken
"""How a drive ended; only a new saga's drive (:meth:`Drive.new`) ends :class:`Taken`."""


class _Exists(Exception):
    """The store refused to create the new saga: its id is taken."""


class _Supervise(Exception):
    """The drive is about to start an attempt with a time limit on a thread no one watches: it
    goes on on a step thread (see :meth:`Drive.run`)."""


@dataclass(frozen=True, slots=True)
class Driving:
    """What every drive of one coordinator shares: where it writes, its clock, its lease."""

    store: EventLog
    clock: Clock
    owner: str
    lease: float
    leases: LeaseKeeper
    threads: bool = True
    """Whether an attempt with a time limit runs on a step thread (see :func:`run_attempt`)."""


@dataclass(frozen=True, slots=True)
class _Unrecorded:
    """An attempt that ran and whose outcome is not in the log yet."""

    attempt: StartAttempt
    outcome: Outcome
    at: datetime


class Drive:
    """One saga, driven by one coordinator until it rests, waits, or another holds it.

    ``state`` is the saga's log folded up to ``state.seq``; ``holding`` says
    whether this coordinator already holds the lease (it claimed the saga).
    """

    def __init__(self, driving: Driving, saga: Saga, state: SagaState, *, holding: bool) -> None:
        self.driving = driving
        self.saga = saga
        self.state = state
        self.persisted = state.seq
        self.pending: list[ev.Event] = []
        self.holding = holding
        self.unrecorded: _Unrecorded | None = None
        self.running: tuple[StartAttempt, _Call, datetime, Kept] | None = None
        """The attempt in progress: what it is, its call, when it began, its lease's keep."""

    @classmethod
    def new(cls, driving: Driving, saga: Saga, saga_id: str, started: ev.SagaStarted) -> Drive:
        """A drive of a saga not in the log yet, whose first event is ``started``.

        Its first commit creates the saga; :meth:`run` ends :class:`Taken`,
        writing nothing, if the id is already in the log.
        """
        drive = cls(driving, saga, SagaState(saga_id), holding=False)
        drive.note((started,))
        return drive

    @property
    def saga_id(self) -> str:
        """The id of the saga driven."""
        return self.state.saga_id

    def run(self) -> DriveResult:
        """Drive until the saga rests or waits (or another coordinator holds it).

        It runs on this thread until it is about to start an attempt with a time
        limit; from there it runs on a step thread, and this thread watches the
        limit (:func:`~saga._engine.threads.supervised`).
        """
        s = self.state
        with telemetry.drive(s.saga_id, s.name, s.version, s.trace):
            try:
                return self._run()
            except _Supervise:
                return supervised(self._run, self._after_limit, name=s.name)

    def _after_limit(self) -> Callable[[], DriveResult]:
        """The attempt in progress passed its limit and its thread was abandoned: record it timed
        out at its limit (as if it had returned then), and drive on from there."""
        running = self.running
        assert running is not None
        action, call, began, kept = running
        self.running = None
        kept.abandon()
        deadline = call.ctx.attempt_deadline
        limit = 0.0 if deadline is None else (deadline - began).total_seconds()
        outcome = timed_out(call.ctx, limit)
        telemetry.attempt_abandoned(call.ctx, outcome.error)
        self._outcome(action, outcome, began)
        return self._run

    def _run(self) -> DriveResult:
        conflicts = 0
        while True:
            try:
                return self._until_rest()
            except _Exists:
                return Taken()
            except LeaseHeld:
                log.info("saga %s: another coordinator holds the lease; letting go", self.saga_id)
                return Busy()
            except PayloadTooLarge as too_big:
                if not self._fail_unwritable_result(too_big):
                    raise
            except ConcurrencyError:
                conflicts += 1
                if conflicts > _MAX_CONFLICTS:
                    raise
            self.reload()

    def _until_rest(self) -> Rest | Wait:
        """Decide and act until the saga rests or waits."""
        while True:
            action = decide(self.state, self.saga, self.driving.clock.now())
            match action:
                case Record():
                    self.note(action.events)
                case StartAttempt():
                    if (action.timeout_at is not None and self.driving.threads
                            and current_watch() is None):
                        raise _Supervise  # nothing done for it yet: the step thread decides again
                    call = self._call(action)  # before the start is committed: may raise
                    self.commit_start(action)
                    self.attempt(action, call)
                case Wait() | Rest():
                    self.commit_rest(action)
                    return action

    # -- transitions ----------------------------------------------------------------------------

    def note(self, events: tuple[ev.Event, ...] | list[ev.Event]) -> None:
        """Apply decided events to the state; they are committed at the next commit point."""
        for e in events:
            self.state.apply(e)
        self.pending.extend(events)

    def commit_start(self, attempt: StartAttempt) -> None:
        """Commit the pending events and ``attempt``'s start, holding the lease while it runs."""
        now = self.driving.clock.now()
        self.note((attempt.started(now),))
        self._append(wake_at=now, hold=True, now=now)

    def attempt(self, attempt: StartAttempt, call: _Call) -> None:
        """Run ``attempt`` (its start is committed) and note the events of its outcome."""
        began = self.driving.clock.now()
        kept = self.driving.leases.kept(call.ctx.saga_id)
        self.running = (attempt, call, began, kept)
        with telemetry.attempt(self.saga.version, call.ctx) as done:
            outcome = call.run(began, self.driving, kept)
            done(outcome.error)
        self.running = None
        self._outcome(attempt, outcome, began)

    def _outcome(self, attempt: StartAttempt, outcome: Outcome, began: datetime) -> None:
        """Note the events of what ``attempt``, begun at ``began``, did."""
        # A timed-out attempt is recorded at its limit, but never before it began (a limit
        # already past when it started: the saga's deadline).
        at = self.driving.clock.now() if outcome.at is None else max(outcome.at, began)
        self.unrecorded = _Unrecorded(attempt, outcome, at)
        self.note(attempt_outcome(
            self.state, self.saga, attempt, result=outcome.result, error=outcome.error,
            calls=outcome.calls, now=at,
        ))

    def commit_rest(self, action: Wait | Rest) -> None:
        """Commit the pending events and let the lease go: the saga rests or waits."""
        if self.pending or self.holding:
            self._append(wake_at=action.until if isinstance(action, Wait) else None, hold=False)

    def reload(self) -> None:
        """Fold the log again after a refused append, and note the unrecorded outcome on it.

        If the log already closed that attempt (another coordinator recorded
        it as lost while its lease had lapsed), the outcome is dropped: the
        step is in doubt and will be compensated.
        """
        self.state = load_state(self.driving.store, self.saga_id)
        self.persisted, self.pending = self.state.seq, []
        u, self.unrecorded = self.unrecorded, None
        if u is None:
            return
        s = self.state.steps.get(u.attempt.step)
        track = None if s is None else (s.compensation if u.attempt.compensation else s.forward)
        if track is None or track.phase is not Phase.RUNNING or track.attempts != u.attempt.attempt:
            return
        self.unrecorded = u
        self.note(attempt_outcome(
            self.state, self.saga, u.attempt, result=u.outcome.result, error=u.outcome.error,
            calls=u.outcome.calls, now=u.at,
        ))

    def _fail_unwritable_result(self, too_big: PayloadTooLarge) -> bool:
        """A step's result too large for the log: record the attempt as failed, not retried,
        and in doubt (the step ran, so its effect is compensated). ``False`` if that is not
        what was refused."""
        u = self.unrecorded
        if u is None or u.outcome.error is not None:
            return False
        log.warning("saga %s: step %s: %s", self.saga_id, u.attempt.step, too_big)
        error = ErrorInfo(type="PayloadTooLarge", message=f"result too large: {too_big}",
                          retryable=False, lost=True)
        self.unrecorded = _Unrecorded(u.attempt, Outcome(error=error, calls=u.outcome.calls), u.at)
        return True

    def _append(self, *, wake_at: datetime | None, hold: bool, now: datetime | None = None) -> None:
        d, state = self.driving, self.state
        if now is None:
            now = d.clock.now()
        wake_at = wake_at if wake_at is not None or not state.status.is_active else now
        lease_until = now + timedelta(seconds=d.lease) if hold else None
        if self.persisted == 0:  # a new saga: this commit creates it
            if not d.store.create(self.saga_id, self.pending, name=state.name,
                                  version=state.version, status=state.status, wake_at=wake_at,
                                  now=now, owner=d.owner, lease_until=lease_until):
                raise _Exists(self.saga_id)
        else:
            d.store.append(self.saga_id, self.persisted, self.pending, status=state.status,
                           wake_at=wake_at, now=now, owner=d.owner, lease_until=lease_until)
        self.persisted, self.pending, self.holding, self.unrecorded = state.seq, [], hold, None

    # -- preparing an attempt -------------------------------------------------------------------

    def _call(self, attempt: StartAttempt) -> _Call:
        """The function ``attempt`` runs, and the context it is given."""
        saga, state = self.saga, self.state
        step = saga[attempt.step]
        target = step.compensation if attempt.compensation else step
        assert target is not None  # decide starts only compensations that exist
        keys = self.driving.store.key_ring  # opens the secret fields of the input and results
        given = step_input(saga, state, keys)
        results = step_results(saga, state, keys)
        result = step_result(saga, state, step.name, keys) if attempt.compensation else None
        ctx = StepContext(
            saga_id=state.saga_id,
            saga_name=saga.name,
            step=step.name,
            attempt=attempt.attempt,
            idempotency_key=idempotency_key(state.saga_id, step.name,
                                            compensation=attempt.compensation),
            input=given,
            results=results,
            result=result,
            deadline=state.deadline,
            attempt_deadline=attempt.timeout_at,
            compensating=attempt.compensation,
            calls=CallLog(mask=attempt_mask(given, result, *results.values())),
            clock=self.driving.clock,
        )
        return _Call(sealed_target(target, ctx, keys), ctx)


@dataclass(frozen=True, slots=True)
class _Call:
    """A step (or compensation) function and the context of the attempt it runs in."""

    target: Step | Compensation
    ctx: StepContext

    def run(self, now: datetime, driving: Driving, kept: Kept) -> Outcome:
        """Run it once, keeping the saga's lease renewed meanwhile (``kept``)."""
        deadline = self.ctx.attempt_deadline
        timeout = None if deadline is None else (deadline - now).total_seconds()
        t = self.target
        with kept:
            return run_attempt(t.fn, self.ctx, is_async=t.is_async, retry=t.retry, timeout=timeout,
                               threads=driving.threads)


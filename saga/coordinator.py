"""The imperative shell: claim a saga, load, fold, decide, run, append; the worker loop.

A coordinator keeps no saga in memory between actions it does not own: it
loads the log, folds it, decides, and appends what it did. While it drives a
saga it holds the saga's lease, and extends its folded state with the events
it appends itself; every append names the ``seq`` it expects and re-checks
the lease, so a stale in-memory state can never be written over a newer log.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from . import events as ev
from . import operator
from .clock import Clock, Wakeup
from .definition import Saga, StepContext
from .errors import (
    ConcurrencyError,
    DefinitionError,
    InvalidInput,
    LeaseHeld,
    PayloadTooLarge,
    SagaError,
    SagaIdConflict,
    StoreError,
    UnknownSagaName,
)
from .execution import Outcome, run_attempt
from .leases import LeaseKeeper
from .state import (
    AttemptError,
    Phase,
    Record,
    Rest,
    SagaState,
    SagaStatus,
    SagaView,
    StartAttempt,
    Wait,
    attempt_outcome,
    decide,
    fold,
    idempotency_key,
)
from .store.base import EventLog, StoredEvent, check_saga_id

__all__ = ["Coordinator"]

log = logging.getLogger("saga")

_MAX_CONFLICTS = 8


@dataclass(frozen=True, slots=True)
class _Busy:
    """Another coordinator holds the saga's lease."""


_Result = Rest | Wait | _Busy


@dataclass(slots=True)
class _Unrecorded:
    """An attempt that ran and whose outcome is not yet in the log."""

    attempt: StartAttempt
    outcome: Outcome
    at: datetime


class Coordinator:
    """Drives sagas through their steps, recording everything in ``store``.

    ``sagas`` are the definitions this coordinator can run (several versions
    of one name may be registered; :meth:`start` uses the newest). ``lease``
    is how many seconds a claim on a saga lasts unless renewed; a coordinator
    renews the leases of attempts it is running every ``lease / 3`` seconds.
    ``clock`` defaults to the store's (on PostgreSQL the database server's
    clock, so that leases mean the same on every machine); tests and the
    simulator pass a :class:`~saga.VirtualClock`.
    """

    def __init__(
        self,
        store: EventLog,
        sagas: Iterable[Saga] = (),
        *,
        lease: float = 30.0,
        clock: Clock | None = None,
        worker_id: str | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        if not isinstance(store, EventLog):
            raise InvalidInput(f"store must be an EventStore (or another saga.EventLog), not {store!r}")
        if isinstance(lease, bool) or not isinstance(lease, int | float) or not lease > 0:
            raise InvalidInput(f"lease must be a positive number of seconds, got {lease!r}")
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float) or not (
            poll_interval > 0
        ):
            raise InvalidInput(f"poll_interval must be positive, got {poll_interval!r}")
        self.store = store
        self.lease = float(lease)
        self.clock = clock or store.default_clock()
        self.poll_interval = float(poll_interval)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._versions: dict[tuple[str, int], Saga] = {}
        self._latest: dict[str, Saga] = {}
        for saga in sagas:
            self.register(saga)
        self._leases = LeaseKeeper(self.store, self.clock, owner=self.worker_id, lease=self.lease)

    # -- definitions ------------------------------------------------------------------------

    def register(self, saga: Saga) -> None:
        """Make ``saga`` runnable by this coordinator."""
        if not isinstance(saga, Saga):
            raise DefinitionError(f"expected a Saga, got {saga!r}")
        if not saga.steps:
            raise DefinitionError(f"saga {saga.name!r} has no steps")
        key = (saga.name, saga.version)
        if key in self._versions and self._versions[key] is not saga:
            raise DefinitionError(f"saga {saga.name!r} version {saga.version} is registered twice")
        self._versions[key] = saga
        latest = self._latest.get(saga.name)
        if latest is None or latest.version < saga.version:
            self._latest[saga.name] = saga

    @property
    def sagas(self) -> list[Saga]:
        """The registered definitions."""
        return list(self._versions.values())

    def _definition(self, name: str, version: int) -> Saga:
        saga = self._versions.get((name, version))
        if saga is None:
            known = ", ".join(sorted({n for n, _ in self._versions})) or "none"
            raise UnknownSagaName(
                f"saga {name!r} version {version} is not registered with this coordinator "
                f"(registered: {known})"
            )
        return saga

    def _newest(self, name: str) -> Saga:
        saga = self._latest.get(name)
        if saga is None:
            known = ", ".join(sorted(self._latest)) or "none"
            raise UnknownSagaName(f"unknown saga {name!r} (registered: {known})")
        return saga

    # -- starting ---------------------------------------------------------------------------

    def _started(self, name: str, input: Any, saga_id: str | None
                 ) -> tuple[Saga, str, ev.SagaStarted]:
        saga = self._newest(name)
        data = saga.validate_input(input)
        saga_id = check_saga_id(saga_id) if saga_id is not None else uuid.uuid4().hex
        now = self.clock.now()
        deadline = now + timedelta(seconds=saga.deadline) if saga.deadline else None
        started = ev.SagaStarted(
            name=saga.name, version=saga.version, input=data, deadline=deadline, at=now
        )
        return saga, saga_id, started

    def _same_saga(self, saga_id: str, started: ev.SagaStarted) -> None:
        first = self.store.load(saga_id)[0].event
        assert isinstance(first, ev.SagaStarted)
        if first.name != started.name or first.input != started.input:
            raise SagaIdConflict(
                f"saga id {saga_id!r} is already used by a {first.name} saga with "
                "different input"
            )

    def start(self, name: str, input: Any = None, *, saga_id: str | None = None) -> str:
        """Record a new saga and return its id; a worker (or :meth:`run`) drives it.

        Idempotent on ``saga_id``: starting the same saga again returns the
        id and writes nothing; the same id with another name or input raises
        :class:`~saga.errors.SagaIdConflict`.
        """
        saga, saga_id, started = self._started(name, input, saga_id)
        created = self.store.create(
            saga_id, [started], name=saga.name, version=saga.version,
            status=SagaStatus.RUNNING, wake_at=started.at, now=started.at,
        )
        if not created:
            self._same_saga(saga_id, started)
        return saga_id

    def execute(self, name: str, input: Any = None, *, saga_id: str | None = None) -> SagaView:
        """Start a saga and drive it inline until it rests, as :meth:`start` then :meth:`run`.

        Cheaper than the two: the saga is created already leased to this
        coordinator, with its first attempt's start in the same commit.
        """
        saga, saga_id, started = self._started(name, input, saga_id)
        state = fold(saga_id, [started])
        action = decide(state, saga, started.at)
        # A new saga (registered sagas have steps, deadlines are in the future) starts
        # its first step.
        assert isinstance(action, StartAttempt), action
        first = action.started(started.at)
        state.apply(first)
        created = self.store.create(
            saga_id, [started, first], name=saga.name, version=saga.version,
            status=state.status, wake_at=started.at, now=started.at,
            owner=self.worker_id, lease_until=started.at + timedelta(seconds=self.lease),
        )
        if not created:
            self._same_saga(saga_id, started)
            return self.run(saga_id)
        result, view = self._drive(saga_id, saga, state, run_first=action)
        return view if isinstance(result, Rest) else self.run(saga_id)

    # -- driving ----------------------------------------------------------------------------

    def run(self, saga_id: str) -> SagaView:
        """Drive one saga inline until it rests (completed, compensated or failed).

        Sleeps through backoffs on this coordinator's clock. If another
        coordinator holds the saga's lease, waits for it to let go or expire.
        """
        while True:
            result, view = self._drive_once(saga_id)
            if isinstance(result, Rest):
                return view
            if isinstance(result, Wait):
                self._sleep_until(saga_id, result.until)
            else:
                summary = self.store.summary(saga_id)
                now = self.clock.now()
                until = summary.lease_expires_at or now
                pause = min(self.poll_interval, max((until - now).total_seconds(), 0.0) + 0.001)
                self.clock.sleep(pause)

    def _sleep_until(self, saga_id: str, until: datetime) -> None:
        """Sleep until ``until``, waking early if an operator appends to the saga."""
        seq = self.store.summary(saga_id).last_seq
        while True:
            remaining = (until - self.clock.now()).total_seconds()
            if remaining <= 0:
                return
            self.clock.sleep(min(remaining, self.poll_interval))
            if self.store.summary(saga_id).last_seq != seq:
                return

    def _drive_once(self, saga_id: str, *, claimed: bool = False,
                    stored: list[StoredEvent] | None = None) -> tuple[_Result, SagaView]:
        if stored is None:
            stored = self.store.load(saga_id)
        state = fold(saga_id, (s.event for s in stored))
        saga = self._definition(state.name, state.version)
        return self._drive(saga_id, saga, state, claimed=claimed)

    def _drive(
        self,
        saga_id: str,
        saga: Saga,
        state: SagaState,
        *,
        run_first: StartAttempt | None = None,
        claimed: bool = False,
    ) -> tuple[_Result, SagaView]:
        """Drive a saga whose state is ``state`` (the log up to ``state.seq``) until it rests.

        With ``run_first`` the attempt's start is already in the log and this
        coordinator holds the lease; with ``claimed`` it holds the lease.
        """
        persisted = state.seq
        holding = run_first is not None or claimed
        pending: list[ev.Event] = []
        unrecorded: _Unrecorded | None = None
        conflicts = 0
        action: Record | StartAttempt | Wait | Rest | None = run_first
        while True:
            now = self.clock.now()
            if action is None:
                action = decide(state, saga, now)
            if isinstance(action, Record):
                for e in action.events:
                    state.apply(e)
                pending.extend(action.events)
                action = None
                continue
            try:
                if isinstance(action, StartAttempt):
                    if action is not run_first:
                        started = action.started(now)
                        state.apply(started)
                        pending.append(started)
                        self._append(saga_id, persisted, pending, state, wake_at=now, hold=True)
                        persisted, pending, holding = state.seq, [], True
                    unrecorded = None
                    outcome = self._attempt(saga, state, action)
                    done_at = self.clock.now()
                    unrecorded = _Unrecorded(action, outcome, done_at)
                    pending = list(attempt_outcome(
                        state, saga, action, result=outcome.result, error=outcome.error,
                        now=done_at,
                    ))
                    for e in pending:
                        state.apply(e)
                    action = None
                    continue
                wake_at = action.until if isinstance(action, Wait) else None
                if pending or holding:
                    self._append(saga_id, persisted, pending, state, wake_at=wake_at, hold=False)
                return action, state.view()
            except LeaseHeld:
                log.info("saga %s: another coordinator holds the lease; letting go", saga_id)
                return _Busy(), state.view()
            except PayloadTooLarge as too_big:
                if unrecorded is None or unrecorded.outcome.error is not None:
                    raise
                # The step's result cannot be recorded: record the attempt as failed for
                # good instead, with its effect in doubt (so it is compensated).
                log.warning("saga %s: step %s: %s", saga_id, unrecorded.attempt.step, too_big)
                too_large = AttemptError(
                    type="PayloadTooLarge", message=f"result too large: {too_big}",
                    retryable=False, lost=True,
                )
                unrecorded = _Unrecorded(unrecorded.attempt, Outcome(error=too_large), unrecorded.at)
                state, pending = self._reload(saga_id, saga, unrecorded)
                persisted, action, unrecorded = state.seq - len(pending), None, None
            except ConcurrencyError:
                conflicts += 1
                if conflicts > _MAX_CONFLICTS:
                    raise
                state, pending = self._reload(saga_id, saga, unrecorded)
                persisted, action, unrecorded = state.seq - len(pending), None, None

    def _reload(self, saga_id: str, saga: Saga, unrecorded: _Unrecorded | None
                ) -> tuple[SagaState, list[ev.Event]]:
        """The saga as its log now stands, with ``unrecorded``'s outcome applied and pending.

        Used when an append was refused: the log moved on (an operator appended)
        or the pending events could not be written as they were.
        """
        state = fold(saga_id, (s.event for s in self.store.load(saga_id)))
        pending = [] if unrecorded is None else self._rerecord(saga, state, unrecorded)
        for e in pending:
            state.apply(e)
        return state, pending

    def _rerecord(self, saga: Saga, state: SagaState, u: _Unrecorded) -> list[ev.Event]:
        """Record an outcome again over a log that moved on (an operator appended)."""
        s = state.steps.get(u.attempt.step)
        track = None if s is None else (s.compensation if u.attempt.compensation else s.forward)
        if track is None or track.phase is not Phase.RUNNING or track.attempts != u.attempt.attempt:
            return []  # someone else already closed this attempt (recorded it as lost)
        return list(attempt_outcome(
            state, saga, u.attempt, result=u.outcome.result, error=u.outcome.error, now=u.at
        ))

    def _append(
        self,
        saga_id: str,
        expected: int,
        batch: list[ev.Event],
        state: SagaState,
        *,
        wake_at: datetime | None,
        hold: bool,
    ) -> None:
        now = self.clock.now()
        self.store.append(
            saga_id, expected, batch,
            status=state.status,
            wake_at=wake_at if wake_at is not None or not state.status.is_active else now,
            now=now,
            owner=self.worker_id,
            lease_until=now + timedelta(seconds=self.lease) if hold else None,
        )

    def _attempt(self, saga: Saga, state: SagaState, action: StartAttempt) -> Outcome:
        step = saga[action.step]
        target = step.compensation if action.compensation else step
        assert target is not None
        now = self.clock.now()
        ctx = StepContext(
            saga_id=state.saga_id,
            saga_name=saga.name,
            step=step.name,
            attempt=action.attempt,
            idempotency_key=idempotency_key(state.saga_id, step.name,
                                            compensation=action.compensation),
            input=self._input(saga, state),
            results=self._results(saga, state),
            result=self._result(step.output_model, state.steps[step.name].result)
            if action.compensation else None,
            deadline=state.deadline,
            attempt_deadline=action.timeout_at,
            compensating=action.compensation,
        )
        timeout = None
        if action.timeout_at is not None:
            timeout = (action.timeout_at - now).total_seconds()
        with self._leases.kept(state.saga_id):
            return run_attempt(target.fn, ctx, is_async=target.is_async, retry=target.retry,
                               timeout=timeout)

    @staticmethod
    def _input(saga: Saga, state: SagaState) -> Any:
        if saga.input_model is None:
            return state.input
        return saga.input_model.model_validate(state.input)

    def _results(self, saga: Saga, state: SagaState) -> dict[str, Any]:
        out = {}
        for name, value in state.results.items():
            model = saga[name].output_model if name in saga else None
            out[name] = self._result(model, value)
        return out

    @staticmethod
    def _result(model: Any, value: Any) -> Any:
        return value if model is None or value is None else model.model_validate(value)

    # -- worker loop ------------------------------------------------------------------------

    def work(
        self,
        *,
        until_idle: bool = False,
        concurrency: int = 1,
        stop: threading.Event | None = None,
    ) -> int:
        """Drive every due saga (new, retry due, lease expired) of the registered names.

        Runs until ``stop`` is set; with ``until_idle``, returns once no saga
        is due now (later retries stay waiting). ``concurrency`` sagas are
        driven at once on threads. Returns how many drives it made.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidInput(f"concurrency must be a whole number >= 1, got {concurrency!r}")
        stop = stop or threading.Event()
        names = sorted(self._latest)
        skipped: set[str] = set()
        in_flight: dict[str, Future[tuple[_Result, SagaView]]] = {}
        driven = 0
        wakeup = Wakeup() if until_idle else self.store.subscribe()
        with ThreadPoolExecutor(concurrency, thread_name_prefix="saga-worker") as pool:
            while not stop.is_set():
                for sid, fut in list(in_flight.items()):
                    if fut.done():
                        del in_flight[sid]
                        driven += 1
                        if not self._drove(sid, fut):
                            skipped.add(sid)
                room = concurrency - len(in_flight)
                due: list[tuple[str, list[StoredEvent] | None]] = []
                if room > 0:
                    now = self.clock.now()
                    try:
                        due = self.store.claim_loaded(
                            self.worker_id, now, until=now + timedelta(seconds=self.lease),
                            names=names, limit=room, exclude=set(in_flight) | skipped,
                        )
                    except StoreError as e:
                        if until_idle:
                            raise
                        log.warning("cannot claim work, trying again: %s", e)
                        wakeup.wait(self.poll_interval, stop)
                        continue
                for sid, stored in due:
                    in_flight[sid] = pool.submit(self._drive_once, sid, claimed=True, stored=stored)
                if due:
                    continue
                if in_flight:
                    self._wait_any(in_flight)
                    continue
                if until_idle:
                    break
                self._idle(stop, names, wakeup)
        return driven

    def _drove(self, saga_id: str, fut: Future[tuple[_Result, SagaView]]) -> bool:
        """Log a finished drive; ``False`` if the saga cannot be driven here at all.

        A drive that failed lets go of the saga's lease, so that another worker
        (or this one, later) can take it up without waiting for it to expire.
        """
        try:
            fut.result()
            return True
        except UnknownSagaName as e:
            log.error("saga %s: %s", saga_id, e)
            self._let_go(saga_id)
            return False
        except SagaError as e:
            log.warning("saga %s: %s", saga_id, e)
            self._let_go(saga_id)
            return True
        except BaseException:
            self._let_go(saga_id)
            raise

    def _let_go(self, saga_id: str) -> None:
        try:
            self.store.release(self.worker_id, saga_id)
        except StoreError as e:
            log.warning("saga %s: cannot release the lease (it will expire): %s", saga_id, e)

    def _wait_any(self, in_flight: dict[str, Future[tuple[_Result, SagaView]]]) -> None:
        wait(list(in_flight.values()), timeout=self.poll_interval, return_when=FIRST_COMPLETED)

    def _idle(self, stop: threading.Event, names: list[str], wakeup: Wakeup) -> None:
        """Sleep until the next saga is due, a notification arrives, or one polling period."""
        now = self.clock.now()
        try:
            wake = self.store.next_wake(names=names)
        except StoreError as e:
            log.warning("cannot read the next wake-up time: %s", e)
            wake = None
        pause = self.poll_interval
        if wake is not None:
            pause = min(pause, max((wake - now).total_seconds(), 0.0) + 0.001)
        self.clock.idle(pause, wakeup, stop)

    # -- operator actions -------------------------------------------------------------------

    def get(self, saga_id: str) -> SagaView:
        """The saga's current state, folded from its log."""
        return fold(saga_id, (s.event for s in self.store.load(saga_id))).view()

    def cancel(self, saga_id: str, *, reason: str = "") -> SagaView:
        """Stop a running saga's forward progress; a worker then compensates it.

        Cancelling a saga already cancelled is a no-op; a saga that is not
        running raises :class:`~saga.errors.InvalidOperation`.
        """
        return operator.cancel(self.store, self.clock, saga_id, reason=reason)

    def retry(self, saga_id: str, *, reason: str = "") -> SagaView:
        """Resume a failed saga's compensation, with a fresh attempt budget."""
        return operator.retry(self.store, self.clock, saga_id, reason=reason)

    def close(self) -> None:
        """Stop the lease renewer (the store stays open)."""
        self._leases.close()

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


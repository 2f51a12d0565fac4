"""The public entry of the imperative shell: :class:`Coordinator`.

A coordinator keeps its registered definitions, starts sagas, and drives
them: inline (:meth:`Coordinator.run`, :meth:`Coordinator.execute`) or as a
worker (:meth:`Coordinator.work`, whose loop lives in :mod:`saga._engine.worker`).
Each drive is a :class:`~saga._engine.drive.Drive` (load, fold, decide, run,
append; see :mod:`saga._engine.drive`). It keeps no saga in memory between drives,
and never drives one saga in two of its threads at once.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from saga import events as ev
from saga import telemetry
from saga._engine.decide import Rest, Wait
from saga._engine.drive import Busy, Drive, DriveResult, Driving, Taken
from saga._engine.leases import LeaseKeeper
from saga._engine.reading import load_state, view
from saga._engine.worker import WorkerLoop
from saga.clock import Clock
from saga.definition import Saga
from saga.errors import DefinitionError, InvalidInput, SagaIdConflict, UnknownSagaName
from saga.operators import actions as operator
from saga.operators import fork as forking
from saga.policies import LONGEST
from saga.secrets.sealing import same_input, stored_input
from saga.state import SagaStatus, SagaView, fold
from saga.store.base import EventLog, SagaSummary, StoredEvent, check_saga_id
from saga.text import article

__all__ = ["Coordinator"]


class _OneAtATime:
    """The sagas this coordinator is driving now, so that no two threads drive the same one."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._busy: set[str] = set()

    @contextmanager
    def hold(self, saga_id: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold ``saga_id`` for the block, waiting for another thread's hold to end
        (without ``wait``: yield ``False`` at once instead, holding nothing)."""
        if not self._take(saga_id, wait=wait):
            yield False
            return
        try:
            yield True
        finally:
            with self._changed:
                self._busy.discard(saga_id)
                self._changed.notify_all()

    def _take(self, saga_id: str, *, wait: bool) -> bool:
        with self._changed:
            while saga_id in self._busy:
                if not wait:
                    return False
                self._changed.wait()
            self._busy.add(saga_id)
            return True

    def busy(self) -> set[str]:
        """The sagas held now."""
        with self._changed:
            return set(self._busy)


class Coordinator:
    """Drives sagas through their steps, recording everything in ``store``.

    ``sagas`` are the definitions this coordinator can run (several versions
    of one name may be registered; :meth:`start` uses the newest). ``lease``
    is how many seconds a claim on a saga lasts unless renewed; a coordinator
    renews the leases of attempts it is running every ``lease / 3`` seconds.
    ``clock`` defaults to the store's (on PostgreSQL the database server's
    clock, so that leases mean the same on every machine); tests and the
    simulator pass a :class:`~saga.VirtualClock`.

    A step with a time limit runs on a step thread, so that it can be
    abandoned at the limit whatever it does. ``step_threads=False`` runs every
    attempt on the driving thread instead and judges limits on ``clock``
    alone: only for steps that never block for real (simulated calls on a
    virtual clock), where the thread handoff would cost more than the step.

    One coordinator may be shared by threads: it never drives one saga in
    two threads at once. A :meth:`run` (or :meth:`execute`) of a saga that
    another thread is driving through the same coordinator waits for that
    drive to end, then carries on from the log; :meth:`work` leaves such a
    saga to the thread that drives it.
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
        step_threads: bool = True,
    ) -> None:
        if not isinstance(store, EventLog):
            raise InvalidInput(f"store must be an EventStore (or another saga.EventLog), not {store!r}")
        longest = LONGEST.total_seconds()  # a lease is added to the present, as a delay is
        if isinstance(lease, bool) or not isinstance(lease, int | float) or not (
            0 < lease <= longest
        ):
            raise InvalidInput(f"lease must be a positive number of seconds, at most {longest:g}, "
                               f"got {lease!r}")
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float) or not (
            0 < poll_interval <= longest
        ):
            raise InvalidInput(f"poll_interval must be positive, at most {longest:g}, "
                               f"got {poll_interval!r}")
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
        self._drives = Driving(self.store, self.clock, self.worker_id, self.lease, self._leases,
                               threads=bool(step_threads))
        self._driving = _OneAtATime()
        telemetry.watch(self.store)

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
        saga_id = check_saga_id(saga_id) if saga_id is not None else uuid.uuid4().hex
        data = stored_input(saga, input, saga_id, self.store.key_ring)  # secret fields sealed
        now = self.clock.now()
        deadline = now + timedelta(seconds=saga.deadline) if saga.deadline else None
        started = ev.SagaStarted(
            name=saga.name, version=saga.version, input=data, deadline=deadline, at=now,
            trace=telemetry.started_context(),
        )
        return saga, saga_id, started

    def _same_saga(self, saga_id: str, started: ev.SagaStarted) -> None:
        first = self.store.load(saga_id)[0].event
        assert isinstance(first, ev.SagaStarted)
        if first.name != started.name or not same_input(first.input, started.input, saga_id,
                                                         self.store.key_ring):
            raise SagaIdConflict(
                f"saga id {saga_id!r} is already used by {article(first.name)} saga with "
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
        with self._driving.hold(saga_id):
            drive = Drive.new(self._drives, saga, saga_id, started)
            result = drive.run()
        if isinstance(result, Rest):
            return drive.state.view()
        if isinstance(result, Taken):
            self._same_saga(saga_id, started)
        return self.run(saga_id)

    # -- driving ----------------------------------------------------------------------------

    def run(self, saga_id: str) -> SagaView:
        """Drive one saga inline until it rests (completed, compensated or failed).

        Sleeps through backoffs on this coordinator's clock. If another
        coordinator holds the saga's lease, waits for it to let go or expire.
        If another thread drives the saga through this coordinator (its own
        :meth:`run`, or :meth:`work`), waits for that drive to end first: one
        coordinator never drives a saga in two threads at once.
        """
        while True:
            with self._driving.hold(saga_id):
                drive = self._load(saga_id, None, holding=False)
                result = drive.run()
            if isinstance(result, Rest):
                return drive.state.view()
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

    def _load(self, saga_id: str, stored: list[StoredEvent] | None, *, holding: bool) -> Drive:
        state = (load_state(self.store, saga_id) if stored is None
                 else fold(saga_id, (e.event for e in stored)))
        return Drive(self._drives, self._definition(state.name, state.version), state,
                     holding=holding)

    def _drive_claimed(self, saga_id: str, stored: list[StoredEvent] | None) -> DriveResult:
        """Drive a saga the worker loop claimed (its events, if the claim read them)."""
        with self._driving.hold(saga_id, wait=False) as mine:
            if not mine:  # another thread of this coordinator drives it, under our lease
                return Busy()
            return self._load(saga_id, stored, holding=True).run()

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
        is due now or within half a second (a retry a moment away is waited
        for, later ones stay waiting, and so do sagas other workers hold).
        ``concurrency`` sagas are driven at once on threads. Idles as the clock
        says (:meth:`Clock.idle <saga.Clock.idle>`): a real-time clock wakes on
        the store's notifications. A saga whose version is not registered here
        is logged, its lease released, and left to other workers. A saga whose
        drive fails for any other reason than a clash or the store's failure
        (its secrets cannot be opened, its definition does not fit its log, its
        decision raised) is parked: its lease released, tried again after a
        pause that grows each time, and the reason recorded in its log once
        (:class:`~saga.events.SagaParked`, shown by ``saga show`` and ``saga
        list``). Returns how many drives it made.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidInput(f"concurrency must be a whole number >= 1, got {concurrency!r}")
        loop = WorkerLoop(
            store=self.store, clock=self.clock, owner=self.worker_id, lease=self.lease,
            poll_interval=self.poll_interval, names=sorted(self._latest),
            drive=self._drive_claimed, busy=self._driving.busy, concurrency=concurrency,
        )
        return loop.run(until_idle=until_idle, stop=stop or threading.Event())

    def held_elsewhere(self, *, limit: int = 1000) -> list[SagaSummary]:
        """Active sagas of the registered names whose lease another worker holds now (a worker
        that was killed holds its sagas until its lease expires), soonest free first; of the
        ``limit`` most recently updated sagas of each name and status."""
        now = self.clock.now()
        held = [
            s for name in sorted(self._latest) for status in (SagaStatus.RUNNING,
                                                               SagaStatus.COMPENSATING)
            for s in self.store.find(status=status, name=name, limit=limit)
            if s.lease_owner not in (None, self.worker_id)
            and s.lease_expires_at is not None and s.lease_expires_at > now
        ]
        return sorted(held, key=lambda s: (s.lease_expires_at or now, s.saga_id))

    # -- operator actions -------------------------------------------------------------------

    def get(self, saga_id: str) -> SagaView:
        """The saga's current state, folded from its log."""
        return view(self.store, saga_id)

    def cancel(self, saga_id: str, *, reason: str = "", by: str | None = None) -> SagaView:
        """Stop a running saga's forward progress; a worker then compensates it.

        Cancelling a saga already cancelled is a no-op; a saga that is not
        running raises :class:`~saga.errors.InvalidOperation`. ``by`` (default:
        the login user) and ``reason`` are recorded in the event.
        """
        return operator.cancel(self.store, self.clock, saga_id, reason=reason, by=by)

    def retry(self, saga_id: str, *, reason: str = "", by: str | None = None) -> SagaView:
        """Resume a failed saga's compensation, with a fresh attempt budget, or make a parked
        saga (:attr:`SagaView.parked <saga.SagaView.parked>`) due at once (``by``, ``reason``
        recorded as for :meth:`cancel`)."""
        return operator.retry(self.store, self.clock, saga_id, reason=reason, by=by)

    def skip(self, saga_id: str, step: str, *, result: Any = None, reason: str = "",
             by: str | None = None) -> SagaView:
        """Mark the saga's stuck step as done with ``result``, checked against the step's output
        model in the registered definition and its secret fields sealed
        (:func:`saga.operators.actions.skip`)."""
        return operator.skip(self.store, self.clock, saga_id, step, result=result,
                             sagas=self.sagas, reason=reason, by=by)

    def fork(self, saga_id: str, *, from_step: str, input: Any = forking.SAME_INPUT,
             new_id: str | None = None, reason: str = "", by: str | None = None) -> str:
        """Start a fork of the saga that runs from ``from_step``, checked against the registered
        definition (:func:`saga.operators.fork.fork`); returns its id."""
        return forking.fork(self.store, self.clock, saga_id, from_step=from_step, input=input,
                            sagas=self.sagas, new_id=new_id, reason=reason, by=by)

    def close(self) -> None:
        """Stop the lease renewer (the store stays open)."""
        self._leases.close()

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


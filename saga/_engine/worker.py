"""The worker loop: claim due sagas, drive them on threads, idle on the clock until more is due."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from queue import Empty, SimpleQueue

from saga._engine.parking import FIRST_PAUSE, back_off, park, why
from saga.clock import Clock, Wakeup
from saga.errors import ConcurrencyError, LeaseHeld, SagaError, StoreError, UnknownSagaName
from saga.store.base import EventLog, StoredEvent

__all__ = ["CLAIM_SHARE", "SOON", "SPARE", "WorkerLoop"]

log = logging.getLogger("saga")

SOON = 0.5
"""Seconds ahead a worker with ``until_idle`` waits for a saga to become due (a retry a moment
away) rather than return; shorter than :data:`~saga._engine.parking.FIRST_PAUSE`, so that it never
waits for a saga it parked."""

SPARE = 1.0
"""Seconds of nothing to do that an idle worker spends bringing the log's projections up to date
(one batch); a shorter pause, such as a retry's backoff, is left to the drives."""

CLAIM_SHARE = 8
"""A worker with drives in flight claims more once an eighth of its room is free, not each time
one drive ends: a claim costs about as much as an append, whether it takes one saga or eight."""

DriveClaimed = Callable[[str, "list[StoredEvent] | None"], object]
"""Drives one claimed saga (its events, if the claim read them); raises if it cannot."""


@dataclass
class WorkerLoop:
    """One run of :meth:`saga.Coordinator.work`: what it claims, how it drives and idles.

    ``busy`` names the sagas this process is driving outside the loop (a
    :meth:`~saga.Coordinator.run` in another thread), which it must not claim.
    """

    store: EventLog
    clock: Clock
    owner: str
    lease: float
    poll_interval: float
    names: list[str]
    drive: DriveClaimed
    busy: Callable[[], set[str]]
    concurrency: int = 1
    _skipped: set[str] = field(default_factory=set)
    _past_wake: datetime | None = None
    """The last wake-up time found already past when there was nothing to claim."""
    _in_flight: dict[str, Future[object]] = field(default_factory=dict)
    _ended: SimpleQueue[str] = field(default_factory=SimpleQueue)
    """Ids of drives that ended, put there as each ends: waiting for one, and collecting
    them, costs the same however many drives are in flight."""

    def run(self, *, until_idle: bool, stop: threading.Event) -> int:
        """Drive due sagas until ``stop`` is set (or, with ``until_idle``, until none is due
        now or within :data:`SOON`).

        Returns how many drives it made.
        """
        driven = 0
        wakeup = Wakeup() if until_idle else self.store.subscribe()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="saga-worker") as pool:
            while not stop.is_set():
                driven += self._collect()
                try:
                    due = self._claim()
                except StoreError as e:
                    if until_idle:
                        raise
                    log.warning("cannot claim work, trying again: %s", e)
                    wakeup.wait(self.poll_interval, stop)
                    continue
                for sid, stored in due:
                    self._in_flight[sid] = fut = pool.submit(self.drive, sid, stored)
                    fut.add_done_callback(functools.partial(self._ended_one, sid))
                if due:
                    continue
                if self._in_flight:
                    driven += self._collect(wait=self.poll_interval)
                    continue
                if not self._idle(stop, wakeup, until_idle=until_idle):
                    break
        return driven + self._collect()

    def _claim(self) -> list[tuple[str, list[StoredEvent] | None]]:
        room = self.concurrency - len(self._in_flight)
        if room <= 0 or (self._in_flight and room < self.concurrency // CLAIM_SHARE):
            return []  # claim a few at a time: each claim is a round trip and a write
        now = self.clock.now()
        return self.store.claim_loaded(
            self.owner, now, until=now + timedelta(seconds=self.lease), names=self.names,
            limit=room, exclude=set(self._in_flight) | self._skipped | self.busy(),
        )

    def _ended_one(self, saga_id: str, _fut: Future[object]) -> None:
        self._ended.put(saga_id)

    def _collect(self, *, wait: float = 0.0) -> int:
        """Forget finished drives, logging those that failed; how many finished. With ``wait``,
        wait that many seconds at most for one to finish first."""
        n = 0
        try:
            sid = self._ended.get(timeout=wait) if wait > 0 else self._ended.get_nowait()
            while True:
                self._finished(sid, self._in_flight.pop(sid))
                n += 1
                sid = self._ended.get_nowait()
        except Empty:
            return n

    def _finished(self, saga_id: str, fut: Future[object]) -> None:
        """Log a drive that failed, and let go of its lease so that another worker (or this
        one, later) need not wait for it to expire. A saga whose version is not registered
        here is not claimed again by this worker; one the store failed on is tried again after
        a pause; one that failed for any other reason but a clash is parked
        (:mod:`saga._engine.parking`)."""
        try:
            fut.result()
        except UnknownSagaName as e:  # another worker may have that version
            log.error("saga %s: %s", saga_id, e)
            self._skipped.add(saga_id)
            self._let_go(saga_id)
        except ConcurrencyError as e:  # the log moved on: it may be driven again at once
            log.warning("saga %s: %s", saga_id, e)
            self._let_go(saga_id)
        except StoreError as e:  # the database failed, or an event cannot be read
            log.warning("saga %s: %s (tried again in %gs)", saga_id, e, FIRST_PAUSE)
            try:
                back_off(self.store, self.clock, self.owner, saga_id)
            except SagaError:
                self._let_go(saga_id)
        except Exception as e:
            self._park(saga_id, e)
        except BaseException:
            self._let_go(saga_id)
            raise

    def _park(self, saga_id: str, error: Exception) -> None:
        """Back off from a saga the drive failed on, saying why (once in its log, and here)."""
        try:
            parked = park(self.store, self.clock, self.owner, saga_id, error)
        except LeaseHeld as e:
            log.info("saga %s: %s", saga_id, e)
            return
        except SagaError as e:
            log.warning("saga %s: cannot park it after its drive failed (%s): %s", saga_id,
                        why(error)[1], e)
            self._let_go(saga_id)
            return
        if parked is None:
            return
        pause = (parked.until - self.clock.now()).total_seconds()
        if parked.new:
            log.error("saga %s: parked: %s (tried again in %.0fs)", saga_id, parked.reason, pause,
                      exc_info=None if isinstance(error, SagaError) else error)
        else:
            log.warning("saga %s: still parked: %s (tried again in %.0fs)", saga_id,
                        parked.reason, pause)

    def _let_go(self, saga_id: str) -> None:
        try:
            self.store.release(self.owner, saga_id)
        except StoreError as e:
            log.warning("saga %s: cannot release the lease (it will expire): %s", saga_id, e)

    def _project(self) -> None:
        """Spend spare time bringing the log's projections up to date (one batch), so that little
        is left for a reader to do."""
        try:
            self.store.catch_up(batches=1)
        except StoreError as e:
            log.warning("cannot bring the attempts table up to date (a reader will): %s", e)

    def _idle(self, stop: threading.Event, wakeup: Wakeup, *, until_idle: bool) -> bool:
        """Wait, as the clock says, until the next saga is due, a notification, or one poll.

        With ``until_idle``, wait only for a saga due within :data:`SOON` (a retry
        a moment away), and return ``False`` instead: nothing more to do now.
        """
        now = self.clock.now()
        try:
            wake = self.store.next_wake(names=self.names)
        except StoreError as e:
            if until_idle:
                raise
            log.warning("cannot read the next wake-up time: %s", e)
            wake = None
        if wake is not None and wake <= now:
            # Due already, yet not claimed: it became due since the claim (claim again now),
            # or this worker cannot claim it (another of its threads drives it, its version is
            # not registered here) if it was the same one last time: not one to wait for.
            unclaimable, self._past_wake = wake == self._past_wake, wake
            if not unclaimable:
                return True
            wake = None
        if until_idle and (wake is None or (wake - now).total_seconds() > SOON):
            return False
        if wake is None or (wake - now).total_seconds() >= SPARE:
            self._project()
        pause = self.poll_interval
        if wake is not None:
            pause = min(pause, (wake - now).total_seconds() + 0.001)
        self.clock.idle(pause, wakeup, stop)
        return True

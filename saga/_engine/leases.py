"""Keeping a coordinator's leases alive while its attempts run."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from saga.clock import Clock
from saga.errors import StoreError
from saga.store.base import EventLog

__all__ = ["Kept", "LeaseKeeper"]

log = logging.getLogger("saga")


class LeaseKeeper:
    """Renews ``owner``'s leases on the sagas whose attempts are running, every ``lease / 3`` s.

    One background daemon thread per keeper, started on first use. A lease
    found lost is only logged: the attempt's outcome will be refused by the
    append's fence, which is what makes losing a lease safe.
    """

    def __init__(self, store: EventLog, clock: Clock, *, owner: str, lease: float) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner
        self.lease = lease
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def kept(self, saga_id: str) -> Kept:
        """Keep the lease on ``saga_id`` renewed for the duration of a ``with`` block."""
        return Kept(self, saga_id)

    def _hold(self, saga_id: str) -> None:
        with self._lock:
            self._running.add(saga_id)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="saga-lease-renewer", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while not self._closed.wait(self.lease / 3):
            with self._lock:
                ids = list(self._running)
            if not ids:
                continue
            now = self.clock.now()
            try:
                held = self.store.renew(self.owner, ids, until=now + timedelta(seconds=self.lease))
            except StoreError as e:
                log.warning("lease renewal failed: %s", e)
                continue
            for lost in set(ids) - held:
                log.warning("saga %s: lease lost while an attempt runs; its outcome will be "
                            "refused", lost)

    def close(self) -> None:
        """Stop renewing."""
        self._closed.set()


class Kept:
    """The block during which one saga's lease is kept (a class: it runs once per attempt).

    An attempt abandoned at its limit stops keeping the lease at once
    (:meth:`abandon`); its thread, if it ever leaves the block, changes nothing.
    """

    __slots__ = ("_done", "_keeper", "_saga_id")

    def __init__(self, keeper: LeaseKeeper, saga_id: str) -> None:
        self._keeper, self._saga_id = keeper, saga_id
        self._done = False

    def __enter__(self) -> None:
        self._keeper._hold(self._saga_id)

    def __exit__(self, *exc: object) -> None:
        self.abandon()

    def abandon(self) -> None:
        """Stop keeping the lease (once: a later call, or the block's end, does nothing)."""
        with self._keeper._lock:
            if self._done:
                return
            self._done = True
            self._keeper._running.discard(self._saga_id)

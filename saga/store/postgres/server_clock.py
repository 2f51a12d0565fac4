"""The database server's clock, read locally."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

import sqlalchemy as sa

from saga.clock import SystemClock
from saga.store.statements import from_ts

__all__ = ["DatabaseClock"]

log = logging.getLogger("saga.store")

_SERVER_NOW = sa.text("SELECT extract(epoch from clock_timestamp())::double precision")


class DatabaseClock(SystemClock):
    """The database server's clock, read locally: ``now()`` costs no round trip.

    The offset to the server is sampled over one round trip (at its midpoint)
    and re-sampled every ``resync`` seconds; time in between advances with the
    local monotonic clock. If the server cannot be reached, the last offset is
    kept (at first: the local clock) and sampling is tried again five seconds
    later. ``now()`` never goes backwards.
    """

    def __init__(self, engine: sa.Engine, *, resync: float = 60.0) -> None:
        self._engine = engine
        self._resync = resync
        self._lock = threading.Lock()
        # (server time, local monotonic time) at the last sample: one object, swapped whole, so
        # that a reader without the lock never pairs one sample's server time with another's
        self._base = (time.time(), time.monotonic())
        self._next_sync = 0.0
        self._floor = 0.0
        """No time handed out is earlier: what the clock said when its offset last changed."""

    def _sample(self) -> tuple[float, float]:
        with self._engine.connect() as conn:
            before = time.monotonic()
            server = conn.execute(_SERVER_NOW).scalar_one()
            after = time.monotonic()
        return float(server), (before + after) / 2

    def _sync(self, local: float) -> None:
        """Sample the server's clock again if it is time (the lock held)."""
        if local < self._next_sync:
            return  # another thread sampled meanwhile
        try:
            sample = self._sample()
        except sa.exc.SQLAlchemyError as e:
            log.warning("cannot read the database's clock, keeping the last offset: %s", e)
            self._next_sync = local + 5.0
            return
        server, base = self._base
        # the time already handed out stays a floor: a new offset never takes the clock back
        self._floor = max(self._floor, server + (time.monotonic() - base))
        self._base = sample
        self._next_sync = local + self._resync

    def now(self) -> datetime:
        # Between samples the time is the last sample moved on by the monotonic clock: no lock.
        local = time.monotonic()
        if local >= self._next_sync:
            with self._lock:
                self._sync(local)
        server, base = self._base
        return from_ts(max(server + (time.monotonic() - base), self._floor))

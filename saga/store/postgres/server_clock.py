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
        self._base_server = time.time()
        self._base_local = time.monotonic()
        self._next_sync = 0.0
        self._last = 0.0

    def _sample(self) -> None:
        with self._engine.connect() as conn:
            before = time.monotonic()
            server = conn.execute(_SERVER_NOW).scalar_one()
            after = time.monotonic()
        self._base_server, self._base_local = float(server), (before + after) / 2

    def now(self) -> datetime:
        with self._lock:
            local = time.monotonic()
            if local >= self._next_sync:
                try:
                    self._sample()
                    self._next_sync = local + self._resync
                except sa.exc.SQLAlchemyError as e:
                    log.warning("cannot read the database's clock, keeping the last offset: %s", e)
                    self._next_sync = local + 5.0
                local = time.monotonic()
            ts = max(self._base_server + (local - self._base_local), self._last)
            self._last = ts
        return from_ts(ts)

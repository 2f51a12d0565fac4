"""Clocks: the system clock, and a virtual clock for tests and simulation."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "SystemClock", "VirtualClock", "Wakeup"]

_STOP_CHECK = 0.1


class Wakeup:
    """A flag a worker sleeps on; set when work may have become due.

    The flag stays set until a :meth:`wait` returns because of it, so a
    notification that arrives while the worker is busy is not lost: its
    next wait returns at once.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def notify(self) -> None:
        """Wake the worker waiting on this (or its next wait)."""
        self._event.set()

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Sleep up to ``timeout`` real seconds; ``True`` if woken by a notification.

        Returns early, with ``False``, once ``stop`` is set (checked every 100 ms).
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        while stop is None or not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._event.wait(min(remaining, _STOP_CHECK) if stop is not None else remaining):
                self._event.clear()
                return True
        return False


class Clock(ABC):
    """Where a coordinator gets the time and how it waits."""

    @abstractmethod
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    @abstractmethod
    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""

    def idle(self, seconds: float, wakeup: Wakeup, stop: threading.Event | None = None) -> None:
        """Wait up to ``seconds`` for work: return early when ``wakeup`` is notified or
        ``stop`` is set.

        A clock that follows real time (the default) sleeps on ``wakeup``, so a
        worker wakes on the store's notifications. A clock whose time moves
        only when told (:class:`VirtualClock`) overrides this to jump instead.
        """
        wakeup.wait(seconds, stop)


class SystemClock(Clock):
    """Wall-clock time; ``sleep`` really sleeps."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class VirtualClock(Clock):
    """Time that moves only when told: ``sleep`` and ``advance`` jump forward at once.

    A test crosses a five-minute backoff in microseconds; the simulator runs
    thousands of sagas in seconds. Thread-safe.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("VirtualClock needs a timezone-aware start time")
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def idle(self, seconds: float, wakeup: Wakeup, stop: threading.Event | None = None) -> None:
        """Jump ``seconds`` forward: virtual time does not wait for notifications."""
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never back)."""
        if seconds > 0:
            with self._lock:
                self._now += timedelta(seconds=seconds)

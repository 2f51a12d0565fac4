"""Clocks: the system clock, and a virtual clock for tests and simulation."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "SystemClock", "VirtualClock"]


class Clock(ABC):
    """Where a coordinator gets the time and how it waits."""

    @abstractmethod
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    @abstractmethod
    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""


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

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never back)."""
        if seconds > 0:
            with self._lock:
                self._now += timedelta(seconds=seconds)

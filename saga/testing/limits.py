"""A virtual clock that knows the time limit of the attempt calling it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime

from saga.clock import VirtualClock

__all__ = ["SagaTestClock"]


class Hung(BaseException):
    """An attempt slept on the clock up to its time limit: it is abandoned there.

    A ``BaseException``, so a step's own ``except Exception`` does not swallow it.
    """


class PastHorizon(BaseException):
    """The clock was asked to move past the horizon set by ``run_until_rest``."""


_attempt_deadline: ContextVar[datetime | None] = ContextVar("saga_attempt_deadline", default=None)


@contextmanager
def attempt_deadline(deadline: datetime | None) -> Iterator[None]:
    """Within the block, :meth:`SagaTestClock.sleep` stops at ``deadline`` (the running attempt's)."""
    token = _attempt_deadline.set(deadline)
    try:
        yield
    finally:
        _attempt_deadline.reset(token)


class SagaTestClock(VirtualClock):
    """A :class:`~saga.VirtualClock` for tests: ``sleep`` jumps at once, as on any virtual clock.

    Called from inside a step attempt run by a :class:`~saga.testing.SagaTestCoordinator`,
    ``sleep`` does not go past the attempt's time limit: it moves the clock
    to the limit and the attempt is recorded as timed out there, as a real
    attempt still running at its limit is. A fake service can therefore
    "hang" by sleeping on this clock, and the test crosses the timeout in no
    real time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(start)
        self._horizon: datetime | None = None

    def sleep(self, seconds: float) -> None:
        deadline = _attempt_deadline.get()
        if deadline is not None:
            remaining = (deadline - self.now()).total_seconds()
            if seconds >= remaining:
                self.advance(remaining)
                raise Hung
        elif self._horizon is not None and seconds > (self._horizon - self.now()).total_seconds():
            raise PastHorizon
        self.advance(seconds)

    @contextmanager
    def horizon(self, until: datetime) -> Iterator[None]:
        """Within the block, a sleep outside any attempt that would pass ``until`` raises."""
        previous, self._horizon = self._horizon, until
        try:
            yield
        finally:
            self._horizon = previous

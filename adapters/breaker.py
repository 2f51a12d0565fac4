"""``CircuitBreaker``: stop calling a service that keeps failing, and try it again later."""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, ClassVar

from saga.definition import StepContext

from .base import Adapter, is_permanent
from .errors import CircuitOpen, InvalidAdapter

__all__ = ["BreakerState", "CircuitBreaker"]

class BreakerState(Enum):
    """Where a circuit breaker stands."""

    CLOSED = "closed"
    """Calls go through; consecutive failures are counted."""
    OPEN = "open"
    """Calls are refused until ``reset_after`` has passed."""
    HALF_OPEN = "half-open"
    """One trial call is out; others are refused until it ends."""


class CircuitBreaker(Adapter):
    """Guards ``adapter``: after ``failures`` consecutive failed calls the circuit opens and
    calls raise :class:`~saga.adapters.CircuitOpen` (retryable) at once, without reaching
    the service.

    ``reset_after`` seconds after it opened, the next call goes through as a
    trial while any other arriving meanwhile is still refused: the trial's
    success closes the circuit, its failure opens it for another
    ``reset_after``. A :class:`~saga.PermanentError` is an answer from a working
    service, so it counts as a success; a call cancelled by a hedge counts as
    neither. Time is the step context's clock. The state lives in this object:
    per process, shared by every step that uses it. A refused call is recorded
    in the call log as ``rejected``; ``CircuitOpen.retry_after`` is when the
    next trial may go through.
    """

    kind: ClassVar[str] = "breaker"

    def __init__(self, adapter: Adapter, failures: int = 5, reset_after: float = 30.0) -> None:
        if not isinstance(adapter, Adapter):
            raise InvalidAdapter(f"CircuitBreaker: expected an adapter (Http, Function, …), not {adapter!r}")
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise InvalidAdapter(f"CircuitBreaker: failures must be a whole number >= 1, not {failures!r}")
        if (
            isinstance(reset_after, bool)
            or not isinstance(reset_after, int | float)
            or math.isnan(reset_after)
            or not reset_after > 0
        ):
            raise InvalidAdapter(
                f"CircuitBreaker: reset_after must be a positive number of seconds, not {reset_after!r}"
            )
        self.adapter = adapter
        self.failures = failures
        self.reset_after = float(reset_after)
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failed = 0
        self._opened_at: datetime | None = None

    @property
    def target(self) -> str:
        return self.adapter.target

    @property
    def state(self) -> BreakerState:
        """The state as of the last call (an open circuit whose time is up stays ``OPEN``
        until a call makes the trial)."""
        with self._lock:
            return self._state

    def __call__(self, ctx: StepContext, /, **request: Any) -> Any:
        trial = self._admit(ctx)
        try:
            value = self.adapter(ctx, **request)
        except Exception as e:
            self._ended(ctx, trial, failed=not is_permanent(e))
            raise
        except BaseException:
            self._ended(ctx, trial, failed=None)
            raise
        self._ended(ctx, trial, failed=False)
        return value

    async def acall(self, ctx: StepContext, /, **request: Any) -> Any:
        trial = self._admit(ctx)
        try:
            value = await self.adapter.acall(ctx, **request)
        except Exception as e:
            self._ended(ctx, trial, failed=not is_permanent(e))
            raise
        except BaseException:  # cancelled (a hedge did not need it), or the process is stopping
            self._ended(ctx, trial, failed=None)
            raise
        self._ended(ctx, trial, failed=False)
        return value

    # -- the state machine ------------------------------------------------------------------

    def _admit(self, ctx: StepContext) -> bool:
        """Let the call through (``True`` if it is the trial) or raise ``CircuitOpen``."""
        now = ctx.clock.now()
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return False
            assert self._opened_at is not None
            reopen = self._opened_at + timedelta(seconds=self.reset_after)
            if self._state is BreakerState.OPEN and now >= reopen:
                self._state = BreakerState.HALF_OPEN
                return True
            state = self._state
        if state is BreakerState.HALF_OPEN:
            error = CircuitOpen(f"circuit breaker on {self.target} is half-open: its trial call is out")
        else:
            error = CircuitOpen(
                f"circuit breaker on {self.target} is open until {reopen.isoformat()}", retry_after=reopen
            )
        ctx.calls.begin(self.adapter.kind, self.target, ctx.clock).finish("rejected", error)
        raise error

    def _ended(self, ctx: StepContext, trial: bool, *, failed: bool | None) -> None:
        """Count a call's end: ``failed`` is ``None`` when it was cancelled."""
        now = ctx.clock.now()
        with self._lock:
            if failed is None:
                if trial and self._state is BreakerState.HALF_OPEN:
                    self._state = BreakerState.OPEN  # the trial never finished: the next call tries
                    self._opened_at = now - timedelta(seconds=self.reset_after)
                return
            if not failed:
                if trial or self._state is BreakerState.CLOSED:
                    self._state, self._failed, self._opened_at = BreakerState.CLOSED, 0, None
                return
            if trial:
                self._state, self._opened_at = BreakerState.OPEN, now
                return
            if self._state is BreakerState.CLOSED:
                self._failed += 1
                if self._failed >= self.failures:
                    self._state, self._opened_at = BreakerState.OPEN, now

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
    """One trial call is out; others are refused until it ends or its time is up."""


class CircuitBreaker(Adapter):
    """Guards ``adapter``: after ``failures`` consecutive failed calls the circuit opens and
    calls raise :class:`~saga.adapters.CircuitOpen` (retryable) at once, without reaching
    the service.

    ``reset_after`` seconds after it opened, the next call goes through as a
    trial while any other arriving meanwhile is still refused: the trial's
    success closes the circuit, its failure opens it for another
    ``reset_after``. A trial has until its attempt's time limit
    (``ctx.attempt_deadline``), and at most ``reset_after``, to end: one still
    out by then (a step abandoned at its timeout while the service drips its
    answer) counts as failed at that time, and its late end changes nothing.
    A :class:`~saga.PermanentError` is an answer from a working service, so it
    counts as a success; a call cancelled by a hedge counts as neither. Time
    is the step context's clock. The state lives in this object: per process,
    shared by every step that uses it. A refused call is recorded in the call
    log as ``rejected``; ``CircuitOpen.retry_after`` is when the next trial may
    go through, or, while a trial is out, when its time is up.
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
        self._trials = 0  # numbers the trials, so that a trial counted at its time is known late
        self._trial_until: datetime | None = None

    @property
    def target(self) -> str:
        return self.adapter.target

    @property
    def state(self) -> BreakerState:
        """The state as of the last call (an open circuit whose time is up stays ``OPEN``
        until a call makes the trial; a trial out past its time stays ``HALF_OPEN``
        until a call counts it as failed)."""
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

    def _admit(self, ctx: StepContext) -> int | None:
        """Let the call through (with the trial's number if it is the trial) or raise
        ``CircuitOpen``."""
        now = ctx.clock.now()
        with self._lock:
            self._expire_trial(now)
            if self._state is BreakerState.CLOSED:
                return None
            if self._state is BreakerState.OPEN:
                assert self._opened_at is not None
                reopen = self._opened_at + timedelta(seconds=self.reset_after)
                if now >= reopen:
                    return self._start_trial(now, ctx.attempt_deadline)
                error = CircuitOpen(
                    f"circuit breaker on {self.target} is open until {reopen.isoformat()}",
                    retry_after=reopen,
                )
            else:
                assert self._trial_until is not None
                error = CircuitOpen(
                    f"circuit breaker on {self.target} is half-open: its trial call is out "
                    f"until {self._trial_until.isoformat()} at the latest",
                    retry_after=self._trial_until,
                )
        ctx.calls.begin(self.adapter.kind, self.target, ctx.clock).finish("rejected", error)
        raise error

    def _start_trial(self, now: datetime, deadline: datetime | None) -> int:
        until = now + timedelta(seconds=self.reset_after)
        self._state = BreakerState.HALF_OPEN
        self._trial_until = until if deadline is None else min(until, deadline)
        self._trials += 1
        return self._trials

    def _expire_trial(self, now: datetime) -> None:
        """A trial still out when its time is up failed then."""
        if self._state is BreakerState.HALF_OPEN:
            assert self._trial_until is not None
            if now >= self._trial_until:
                self._open(self._trial_until)

    def _open(self, at: datetime) -> None:
        self._state, self._opened_at, self._trial_until = BreakerState.OPEN, at, None

    def _ended(self, ctx: StepContext, trial: int | None, *, failed: bool | None) -> None:
        """Count a call's end: ``trial`` is its number if it was the trial, ``failed`` is
        ``None`` when it was cancelled."""
        now = ctx.clock.now()
        with self._lock:
            self._expire_trial(now)
            if trial is not None and (trial != self._trials or self._state is not BreakerState.HALF_OPEN):
                return  # a trial counted as failed when its time was up: its end changes nothing
            if failed is None:
                if trial is not None:  # the trial never finished: the next call tries
                    self._open(now - timedelta(seconds=self.reset_after))
                return
            if not failed:
                if trial is not None or self._state is BreakerState.CLOSED:
                    self._state, self._failed, self._opened_at = BreakerState.CLOSED, 0, None
                    self._trial_until = None
                return
            if trial is not None:
                self._open(now)
                return
            if self._state is BreakerState.CLOSED:
                self._failed += 1
                if self._failed >= self.failures:
                    self._open(now)

"""Instrumenting steps for tests: injected failures and hangs, time limits on the virtual clock.

A :class:`~saga.testing.SagaTestCoordinator` swaps the function of every step
and compensation it registers for a wrapper of the same kind (plain or
``async``) that runs the injected faults first, then the real function, and
puts the function back when the coordinator closes. The definitions
themselves are not edited.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from saga._engine.execution import AttemptTimedOut
from saga.definition import Compensation, Step, StepContext
from saga.testing.limits import Hung, SagaTestClock, attempt_deadline

__all__ = ["Fault", "InjectedFailure"]

Action = Step | Compensation
ErrorSpec = BaseException | type[BaseException] | None


class InjectedFailure(Exception):
    """The error a step raises when a test injected a failure without naming one."""


def timed_out() -> BaseException:
    """The signal that makes the attempt runner record an attempt as timed out."""
    return AttemptTimedOut()


class Fault:
    """A fault injected into a step (or compensation) by ``fail`` or ``hang``.

    It fires on the next ``times`` attempts (``None``: every attempt), then
    the real function runs again. :attr:`fired` counts the attempts it
    failed so far. :meth:`undo` removes it early; the coordinator removes
    every fault when it closes (at the end of the test).
    """

    def __init__(self, target: Action, *, times: int | None, error: ErrorSpec, hang: bool) -> None:
        self.target = target
        self.times = times
        self.hang = hang
        self._error = error
        self.fired = 0
        self._owner: Instrumented | None = None

    @property
    def spent(self) -> bool:
        """Whether the fault has fired its ``times`` attempts."""
        return self.times is not None and self.fired >= self.times

    def undo(self) -> None:
        """Stop injecting this fault (a no-op if already undone)."""
        if self._owner is not None:
            self._owner.remove(self)
            self._owner = None

    def __enter__(self) -> Fault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()

    def fire(self, ctx: StepContext, clock: SagaTestClock) -> None:
        """Fail the running attempt as this fault says (called with the fault's count taken)."""
        if self.hang:
            deadline = ctx.attempt_deadline
            if deadline is None:  # the coordinator checked for a limit when the hang was injected
                raise RuntimeError(f"a hang was injected into {self.target.name}, which has no time limit")
            clock.advance((deadline - clock.now()).total_seconds())
            raise Hung
        error = self._error
        if error is None:
            count = "" if self.times is None else f" ({self.fired} of {self.times})"
            raise InjectedFailure(f"failure injected into {self.target.name}{count}")
        if isinstance(error, type):
            raise error()
        raise error

    def __repr__(self) -> str:
        kind = "hang" if self.hang else "fail"
        times = "every attempt" if self.times is None else f"{self.fired}/{self.times}"
        return f"<Fault {kind} {self.target.name}: {times}>"


class Instrumented:
    """One step's (or compensation's) wrapper, installed while a test coordinator uses it."""

    def __init__(self, target: Action, clock: SagaTestClock) -> None:
        self.target = target
        self.clock = clock
        self.original: Callable[[StepContext], Any] = target.fn
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        wrapper = self._async_call if target.is_async else self._call
        target.fn = wrapper

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        fault._owner = self
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def restore(self) -> None:
        """Put the real function back and drop every fault."""
        for fault in list(self._faults):
            fault.undo()
        self.target.fn = self.original

    def _take(self) -> Fault | None:
        """The fault that fails this attempt, if any (the oldest one not yet spent)."""
        with self._lock:
            for fault in self._faults:
                if not fault.spent:
                    fault.fired += 1
                    return fault
        return None

    def _overran(self, deadline: datetime | None) -> bool:
        return deadline is not None and self.clock.now() >= deadline

    def _call(self, ctx: StepContext) -> Any:
        with attempt_deadline(ctx.attempt_deadline):
            try:
                fault = self._take()
                if fault is not None:
                    fault.fire(ctx, self.clock)
                result = self.original(ctx)
            except Hung:
                raise timed_out() from None
            except Exception:
                if self._overran(ctx.attempt_deadline):
                    raise timed_out() from None  # abandoned at its limit: the late error is not seen
                raise
        if self._overran(ctx.attempt_deadline):
            raise timed_out()  # abandoned at its limit: the late result is not seen
        return result

    async def _async_call(self, ctx: StepContext) -> Any:
        with attempt_deadline(ctx.attempt_deadline):
            try:
                fault = self._take()
                if fault is not None:
                    fault.fire(ctx, self.clock)
                result = await self.original(ctx)
            except Hung:
                raise timed_out() from None
            except Exception:
                if self._overran(ctx.attempt_deadline):
                    raise timed_out() from None
                raise
        if self._overran(ctx.attempt_deadline):
            raise timed_out()
        return result

"""Running one attempt of a step: plain or async, with a timeout, errors classified."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any, ClassVar

from .codec import InvalidValue, to_json_value
from .definition import StepContext
from .policies import Retry
from .state import AttemptError

__all__ = ["Outcome", "run_attempt"]

_MESSAGE_LIMIT = 4000


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt did: a JSON result, or an error."""

    result: Any = None
    error: AttemptError | None = None


def error_name(error: BaseException) -> str:
    """``module.Class`` for an exception (builtins without the module)."""
    cls = type(error)
    if cls.__module__ in ("builtins", "saga.errors"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def describe(error: BaseException, retry: Retry) -> AttemptError:
    """Classify an exception raised by a step for the record."""
    message = str(error)
    if len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + f"… ({len(message)} characters)"
    return AttemptError(type=error_name(error), message=message, retryable=retry.is_retryable(error))


_local = threading.local()


def _runner() -> asyncio.Runner:
    """One event loop per thread, reused across attempts."""
    runner: asyncio.Runner | None = getattr(_local, "runner", None)
    if runner is None:
        runner = _local.runner = asyncio.Runner()
    return runner


def run_attempt(
    fn: Callable[[StepContext], Any],
    ctx: StepContext,
    *,
    is_async: bool,
    retry: Retry,
    timeout: float | None,
) -> Outcome:
    """Run ``fn(ctx)`` once and say how it ended.

    An ``async`` function that runs past ``timeout`` seconds is cancelled; a
    plain one runs on a daemon thread and is abandoned (its late result is
    ignored). Exceptions become :class:`AttemptError`; ``KeyboardInterrupt``
    and ``SystemExit`` propagate.
    """
    if timeout is not None and timeout <= 0:
        return _timed_out(ctx, 0.0)
    try:
        if is_async:
            value = _run_async(fn, ctx, timeout)
        elif timeout is None:
            value = fn(ctx)
        else:
            value = _run_in_thread(fn, ctx, timeout)
    except _Timeout:
        return _timed_out(ctx, timeout or 0.0)
    except Exception as e:
        return Outcome(error=describe(e, retry))
    try:
        return Outcome(result=to_json_value(value))
    except InvalidValue as e:
        return Outcome(error=AttemptError(
            type="InvalidResult",
            message=f"{ctx.step} returned a value that is not JSON: {e}",
            retryable=False,
        ))


class _Timeout(Exception):
    pass


def _timed_out(ctx: StepContext, timeout: float) -> Outcome:
    return Outcome(error=AttemptError(
        type="AttemptTimedOut",
        message=f"attempt {ctx.attempt} of {ctx.step} was still running at its time limit "
        f"({timeout:.3g}s)",
        timed_out=True,
    ))


def _run_async(fn: Callable[[StepContext], Any], ctx: StepContext, timeout: float | None) -> Any:
    return _runner().run(_within(fn(ctx), timeout))


async def _within(coro: Coroutine[Any, Any, Any], timeout: float | None) -> Any:
    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            return await coro
    except TimeoutError:
        if limit.expired():  # our limit, not a TimeoutError the step raised itself
            raise _Timeout from None
        raise


def _run_in_thread(fn: Callable[[StepContext], Any], ctx: StepContext, timeout: float) -> Any:
    job = _Job(fn, ctx)
    _StepThread.take().give(job)
    if not job.done.acquire(timeout=timeout):
        raise _Timeout  # the thread runs on; its late result is dropped
    if job.error is not None:
        raise job.error
    return job.value


class _Job:
    """One call handed to a step thread; ``done`` is released when it has returned or raised."""

    __slots__ = ("ctx", "done", "error", "fn", "value")

    def __init__(self, fn: Callable[[StepContext], Any], ctx: StepContext) -> None:
        self.fn, self.ctx = fn, ctx
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()


class _StepThread:
    """A daemon thread that runs plain steps that have a timeout, one at a time.

    Starting a thread per attempt costs more than the rest of a step's
    bookkeeping, so idle threads wait for the next job. A step that runs past
    its timeout is abandoned: its thread finishes the call in its own time (as
    a daemon it cannot hold up the process's exit), its result is dropped, and
    only then does it become idle again.
    """

    _idle: ClassVar[list[_StepThread]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()
    MAX_IDLE: ClassVar[int] = 64

    def __init__(self) -> None:
        self._jobs: SimpleQueue[_Job] = SimpleQueue()
        threading.Thread(target=self._loop, name="saga-step", daemon=True).start()

    @classmethod
    def take(cls) -> _StepThread:
        """An idle thread, or a new one."""
        with cls._lock:
            if cls._idle:
                return cls._idle.pop()
        return cls()

    @classmethod
    def _forget_idle(cls) -> None:
        """In a forked child the idle threads do not exist."""
        cls._idle = []
        cls._lock = threading.Lock()

    def give(self, job: _Job) -> None:
        self._jobs.put(job)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            threading.current_thread().name = f"saga-step-{job.ctx.step}"
            try:
                job.value = job.fn(job.ctx)
            except BaseException as e:
                job.error = e
            with self._lock:
                idle = len(self._idle) < self.MAX_IDLE
                if idle:
                    self._idle.append(self)
            job.done.release()
            if not idle:
                return


os.register_at_fork(after_in_child=_StepThread._forget_idle)

"""Running one attempt of a step: plain or async, with a timeout, errors classified."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

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
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


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
        message=f"attempt {ctx.attempt} of {ctx.step} ran past its {timeout:g}s limit",
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
    box: list[Any] = []
    done = threading.Event()

    def target() -> None:
        try:
            box.append((True, fn(ctx)))
        except BaseException as e:
            box.append((False, e))
        finally:
            done.set()

    threading.Thread(target=target, name=f"saga-step-{ctx.step}", daemon=True).start()
    if not done.wait(timeout):
        raise _Timeout
    ok, value = box[0]
    if not ok:
        raise value
    return value

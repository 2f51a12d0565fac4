"""Running one attempt of a step: plain or async, with a timeout, errors classified.

An attempt with a time limit runs inline when its drive runs on a step thread
whose limits another thread watches (:mod:`saga._engine.threads`), and on a
step thread of its own otherwise.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from saga._engine.threads import Abandoned, Job, StepThread, Watch, current_watch
from saga.calls import Call, as_is, error_text
from saga.codec import InvalidValue, to_json_value
from saga.definition import StepContext
from saga.policies import Retry
from saga.state import ErrorInfo

__all__ = ["AttemptTimedOut", "Outcome", "run_attempt", "timed_out"]

_MESSAGE_LIMIT = 4000

class AttemptTimedOut(Exception):
    """An attempt ran past its time limit.

    The attempt runner raises it inside itself at the limit; a test's fault
    injection may raise it from a step to stand for a hang. Either way the
    attempt is recorded as timed out at its limit, its effect in doubt.
    """


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt did: a JSON result, or an error; ``calls`` its adapters made.

    ``at`` is when to record it, if known: when it returned (read once, to judge
    its time limit), or its limit for an attempt that timed out.
    """

    result: Any = None
    error: ErrorInfo | None = None
    calls: tuple[Call, ...] = ()
    at: datetime | None = None


def error_name(error: BaseException) -> str:
    """``module.Class`` for an exception (builtins without the module)."""
    cls = type(error)
    if cls.__module__ in ("builtins", "saga.errors"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def describe(error: BaseException, retry: Retry, *, mask: Callable[[str], str] = as_is
             ) -> ErrorInfo:
    """Classify an exception raised by a step for the record (its message through ``mask``,
    made storable: see :func:`~saga.calls.error_text`).

    An exception whose ``in_doubt`` is ``True`` (an adapter that knows the service
    acted, as on an answer it cannot use) leaves the attempt's effect in doubt.
    """
    message = error_text(error, limit=_MESSAGE_LIMIT, mask=mask)
    after = getattr(error, "retry_after", None)
    if not isinstance(after, datetime) or after.utcoffset() is None:
        after = None  # only an aware time can be compared with the log's
    return ErrorInfo(type=error_name(error), message=message, retryable=retry.is_retryable(error),
                     retry_after=after, lost=getattr(error, "in_doubt", False) is True)


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
    threads: bool = True,
) -> Outcome:
    """Run ``fn(ctx)`` once and say how it ended.

    With a ``timeout`` the function runs on a reusable daemon thread (an
    ``async`` one on that thread's own event loop, cancelled at the limit)
    and is abandoned when it overruns, whatever it does: swallows the
    cancellation, blocks its event loop, never returns. Its late result is
    ignored, and the attempt is reported timed out at its limit. Exceptions
    become :class:`~saga.ErrorInfo`; ``KeyboardInterrupt`` and
    ``SystemExit`` propagate.

    Every message the outcome carries, its own and its calls', has passed
    through ``ctx.calls.mask``: the secrets the attempt was given are masked.

    A result the log cannot store (not JSON, or JSON it cannot read back:
    see :func:`~saga.codec.to_json_value`) fails the attempt for good, in
    doubt: the step ran, so its effect may have happened and is compensated.

    An attempt that ends at or after its limit (``ctx.attempt_deadline``) on
    ``ctx.clock`` is timed out at that limit whatever it returned, so a step
    that sleeps on a virtual clock past its limit times out as a real one
    would. The outcome carries the calls ``ctx.calls`` recorded.

    With ``threads=False`` the function runs on the calling thread even with a
    ``timeout``, and its limit is judged on ``ctx.clock`` alone: for steps that
    never block for real, such as simulated calls on a virtual clock, where a
    thread handoff per attempt would cost more than the step.
    """
    if timeout is not None and timeout <= 0:
        return _timed_out(ctx, 0.0)
    outcome = _attempt(fn, ctx, is_async=is_async, retry=retry, timeout=timeout if threads else None)
    limit = ctx.attempt_deadline
    if limit is not None and outcome.at is None:
        ended = ctx.clock.now()
        outcome = (_timed_out(ctx, timeout or 0.0) if ended >= limit
                   else Outcome(outcome.result, outcome.error, outcome.calls, ended))
    if len(ctx.calls):
        return Outcome(outcome.result, outcome.error, tuple(ctx.calls.calls()), outcome.at)
    return outcome


def _attempt(
    fn: Callable[[StepContext], Any],
    ctx: StepContext,
    *,
    is_async: bool,
    retry: Retry,
    timeout: float | None,
) -> Outcome:
    if timeout is not None and timeout <= 0:
        return _timed_out(ctx, 0.0)
    try:
        if timeout is not None:
            watch = current_watch()
            value = (_run_in_thread(fn, ctx, timeout, is_async=is_async) if watch is None
                     else _run_watched(fn, ctx, timeout, watch, is_async=is_async))
        elif is_async:
            value = _run_async(fn, ctx, None)
        else:
            value = fn(ctx)
    except AttemptTimedOut:
        return _timed_out(ctx, timeout or 0.0)
    except Exception as e:
        return Outcome(error=describe(e, retry, mask=ctx.calls.mask))
    try:
        return Outcome(result=to_json_value(value))
    except InvalidValue as e:
        why = error_text(e, limit=_MESSAGE_LIMIT, mask=ctx.calls.mask)
        return Outcome(error=ErrorInfo(
            type="InvalidResult",
            message=f"{ctx.step} returned a value the log cannot store: {why}",
            retryable=False,
            lost=True,
        ))


def timed_out(ctx: StepContext, timeout: float) -> Outcome:
    """The outcome of an attempt abandoned at its limit ``timeout`` seconds after it began, with
    the calls it recorded until then."""
    outcome = _timed_out(ctx, timeout)
    if len(ctx.calls):
        return Outcome(outcome.result, outcome.error, tuple(ctx.calls.calls()), outcome.at)
    return outcome


def _timed_out(ctx: StepContext, timeout: float) -> Outcome:
    return Outcome(error=ErrorInfo(
        type="AttemptTimedOut",
        message=f"attempt {ctx.attempt} of {ctx.step} was still running at its time limit "
        f"({timeout:.3g}s)",
        timed_out=True,
    ), at=ctx.attempt_deadline)


def _run_async(fn: Callable[[StepContext], Any], ctx: StepContext, timeout: float | None) -> Any:
    """Run an ``async`` step to its end on this thread's event loop."""
    return _runner().run(_within(fn(ctx), timeout))


async def _within(coro: Coroutine[Any, Any, Any], timeout: float | None) -> Any:
    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            value = await coro
    except TimeoutError:
        if limit.expired():  # our limit, not a TimeoutError the step raised itself
            raise AttemptTimedOut from None
        raise
    if limit.expired():  # it swallowed the cancellation and returned late
        raise AttemptTimedOut
    return value


def _run_watched(
    fn: Callable[[StepContext], Any], ctx: StepContext, timeout: float, watch: Watch, *,
    is_async: bool,
) -> Any:
    """Run an attempt inline on a supervised step thread, its limit watched by the waiting thread."""
    me = threading.current_thread()
    if me.name != (name := f"saga-step-{ctx.step}"):  # named after the step it runs, for dumps
        me.name = name
    watch.begin(timeout)
    try:
        value = _run_async(fn, ctx, timeout) if is_async else fn(ctx)
    except BaseException:
        if not watch.end():
            raise Abandoned from None
        raise
    if not watch.end():
        raise Abandoned
    return value


def _run_in_thread(
    fn: Callable[[StepContext], Any], ctx: StepContext, timeout: float, *, is_async: bool
) -> Any:
    step = functools.partial(_run_async, fn, timeout=timeout) if is_async else fn
    job = Job(functools.partial(step, ctx), ctx.step)
    StepThread.take().give(job)
    if not job.done.acquire(timeout=timeout):
        raise AttemptTimedOut  # the thread runs on; its late result is dropped
    if job.error is not None:
        raise job.error
    return job.value




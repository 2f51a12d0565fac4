"""The adapter interface: one calling convention, sync and async, that wrappers keep."""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

from saga.calls import PendingCall
from saga.definition import StepContext
from saga.errors import PermanentError

__all__ = ["Adapter", "is_permanent", "recorded", "run_coroutine", "run_to_end"]

T = TypeVar("T")


class Adapter(ABC):
    """How a step reaches something outside: ``adapter(ctx, **request)`` in a plain step,
    ``await adapter.acall(ctx, **request)`` in an ``async`` one.

    Both give the same answer and raise the same errors: a
    :class:`~saga.PermanentError` when trying again cannot help, anything else
    (normally an :class:`~saga.adapters.AdapterError`) when it may. Each call
    to the outside world is recorded in ``ctx.calls``. Wrappers (failover,
    hedge, circuit breaker, fault injection) are adapters too and pass
    ``(ctx, **request)`` on, so any of them can stand inside any other.
    """

    kind: ClassVar[str]
    """What :class:`~saga.calls.Call` records as ``adapter``: ``"http"``, ``"sql"``, …"""

    @property
    @abstractmethod
    def target(self) -> str:
        """Where calls go, as the call log shows it (never with a password)."""

    @abstractmethod
    def __call__(self, ctx: StepContext, /, *args: Any, **request: Any) -> Any:
        """Make the call from a plain step; the answer, or an exception."""

    @abstractmethod
    async def acall(self, ctx: StepContext, /, *args: Any, **request: Any) -> Any:
        """Make the call from an ``async`` step; the same answer as :meth:`__call__`."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.target}>"


def is_permanent(error: BaseException) -> bool:
    """Whether an attempt that failed with ``error`` must not be retried."""
    return isinstance(error, PermanentError)


@contextmanager
def recorded(ctx: StepContext, adapter: str, target: str) -> Iterator[PendingCall]:
    """Record one call in ``ctx.calls``: ``ok`` when the block ends, ``cancelled`` when the
    task running it is cancelled, ``error`` when it raises."""
    pending = ctx.calls.begin(adapter, target, ctx.clock)
    try:
        yield pending
    except asyncio.CancelledError:
        pending.finish("cancelled")
        raise
    except BaseException as e:
        pending.finish("error", e)
        raise
    pending.finish("ok")


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to the end from plain code: on a new event loop in this thread, or on a
    short-lived thread when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=run, name="saga-adapter")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


async def run_to_end(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a worker thread, awaited to its end.

    A thread cannot be stopped: a cancellation that arrives while it runs (a
    hedge that no longer needs the call) waits for it, and the call answers
    or raises as ``fn`` does. So a call that records itself inside ``fn`` is
    logged as it really ended, and a hedge learns of its effect.
    """
    running = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    while True:
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            if running.cancelled():  # the event loop itself is closing
                raise

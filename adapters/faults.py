"""``Faulty``: made-up failures and delays around an adapter, reproducible from a seed."""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import threading
import weakref
from typing import Any, ClassVar

from saga.calls import CallLog
from saga.clock import Clock, VirtualClock
from saga.definition import StepContext

from .base import Adapter, recorded
from .errors import InjectedFault, InvalidAdapter

__all__ = ["Faulty"]


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and not math.isnan(value)


class Faulty(Adapter):
    """Wraps ``adapter`` to fail a share of its calls and delay them (tests, demos, simulation).

    Each call first waits ``latency`` seconds (a number, or ``(low, high)`` for
    a uniform draw) on the step context's clock, so under a virtual clock the
    delay costs no real time; then, with probability ``fail_rate``, it raises
    :class:`~saga.adapters.InjectedFault` (retryable, recorded in the call log
    as an error of the wrapped adapter's target) instead of calling ``adapter``.

    The draws are a function of ``seed``, the step's idempotency key, the
    attempt and how many calls through this ``Faulty`` the attempt made before, so
    the same seed and the same saga ids fail the same calls however threads
    interleave. Without a seed each ``Faulty`` draws one at random.
    """

    kind: ClassVar[str] = "faulty"

    def __init__(
        self,
        adapter: Adapter,
        fail_rate: float = 0.0,
        latency: float | tuple[float, float] | None = None,
        seed: int | str | None = None,
    ) -> None:
        if not isinstance(adapter, Adapter):
            raise InvalidAdapter(f"Faulty: expected an adapter (Http, SqlParticipant, …), not {adapter!r}")
        if not _number(fail_rate) or not 0.0 <= fail_rate <= 1.0:
            raise InvalidAdapter(f"Faulty: fail_rate must be a number from 0 to 1, not {fail_rate!r}")
        self.adapter = adapter
        self.fail_rate = float(fail_rate)
        self.latency = _latency(latency)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | str)):
            raise InvalidAdapter(f"Faulty: seed must be an int or a string, not {seed!r}")
        self.seed = seed if seed is not None else random.getrandbits(64)
        self._lock = threading.Lock()
        self._calls: weakref.WeakKeyDictionary[CallLog, int] = weakref.WeakKeyDictionary()

    @property
    def target(self) -> str:
        return self.adapter.target

    def _draw(self, ctx: StepContext) -> tuple[bool, float]:
        """Whether this call fails, and its delay."""
        with self._lock:  # how many calls this Faulty made in the attempt before this one
            n = self._calls.get(ctx.calls, 0)
            self._calls[ctx.calls] = n + 1
        material = f"{self.seed}\x00{ctx.idempotency_key}\x00{ctx.attempt}\x00{self.target}\x00{n}"
        rng = random.Random(int.from_bytes(hashlib.blake2b(material.encode(), digest_size=8).digest(), "big"))
        fail = rng.random() < self.fail_rate
        low, high = self.latency
        return fail, (rng.uniform(low, high) if high > low else low)

    def _fault(self, ctx: StepContext) -> InjectedFault:
        return InjectedFault(f"injected fault on {self.target} (attempt {ctx.attempt} of {ctx.step})")

    def __call__(self, ctx: StepContext, /, **request: Any) -> Any:
        fail, delay = self._draw(ctx)
        if fail:
            with recorded(ctx, self.adapter.kind, self.target):
                ctx.clock.sleep(delay)
                raise self._fault(ctx)
        ctx.clock.sleep(delay)
        return self.adapter(ctx, **request)

    async def acall(self, ctx: StepContext, /, **request: Any) -> Any:
        fail, delay = self._draw(ctx)
        if fail:
            with recorded(ctx, self.adapter.kind, self.target):
                await _sleep(ctx.clock, delay)
                raise self._fault(ctx)
        await _sleep(ctx.clock, delay)
        return await self.adapter.acall(ctx, **request)


async def _sleep(clock: Clock, seconds: float) -> None:
    """Wait on ``clock``: a virtual clock jumps, any other sleeps without blocking the loop."""
    if isinstance(clock, VirtualClock):
        clock.sleep(seconds)
        await asyncio.sleep(0)
    elif seconds > 0:
        await asyncio.sleep(seconds)


def _latency(value: Any) -> tuple[float, float]:
    if value is None:
        return 0.0, 0.0
    if _number(value) and value >= 0:
        return float(value), float(value)
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and all(_number(v) for v in value)
        and 0 <= value[0] <= value[1]
    ):
        return float(value[0]), float(value[1])
    raise InvalidAdapter(f"Faulty: latency must be seconds >= 0 or a (low, high) pair, not {value!r}")

"""Redundancy: passive (``Failover``: standbys in order) and active (``Hedge``: replicas in
parallel, the first good answer wins)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any, ClassVar

from saga.definition import StepContext

from .base import Adapter, is_permanent, run_coroutine
from .errors import AllReplicasFailed, InvalidAdapter

__all__ = ["Failover", "Hedge"]


def _replicas(owner: str, replicas: Any) -> tuple[Adapter, ...]:
    if isinstance(replicas, Adapter) or not isinstance(replicas, Sequence) or isinstance(replicas, str):
        raise InvalidAdapter(f"{owner}: replicas must be a list of adapters, not {replicas!r}")
    out = tuple(replicas)
    if not out:
        raise InvalidAdapter(f"{owner}: needs at least one replica")
    for r in out:
        if not isinstance(r, Adapter):
            raise InvalidAdapter(f"{owner}: replicas must be adapters (Http, SqlParticipant, …), not {r!r}")
    return out


def _all_failed(
    owner: str, replicas: Sequence[Adapter], errors: Sequence[BaseException]
) -> AllReplicasFailed:
    parts = "; ".join(f"{r.target}: {type(e).__name__}: {e}" for r, e in zip(replicas, errors, strict=True))
    return AllReplicasFailed(f"{owner}: all {len(errors)} replicas failed: {parts}", errors)


class Failover(Adapter):
    """Passive redundancy: tries ``replicas`` in order within one call, starting from the
    first on every call, and returns the first answer.

    A replica that fails with a retryable error hands over to the next; a
    :class:`~saga.PermanentError` ends the call at once (the request itself is
    bad). When all fail it raises :class:`~saga.adapters.AllReplicasFailed`
    (retryable), holding each replica's error. Every replica tried leaves its
    own entry in the call log, so the failover is in the audit trail.
    """

    kind: ClassVar[str] = "failover"

    def __init__(self, replicas: Sequence[Adapter]) -> None:
        self.replicas = _replicas("Failover", replicas)

    @property
    def target(self) -> str:
        return " | ".join(r.target for r in self.replicas)

    def __call__(self, ctx: StepContext, /, **request: Any) -> Any:
        errors: list[BaseException] = []
        for replica in self.replicas:
            try:
                return replica(ctx, **request)
            except Exception as e:
                if is_permanent(e):
                    raise
                errors.append(e)
        raise _all_failed("Failover", self.replicas, errors)

    async def acall(self, ctx: StepContext, /, **request: Any) -> Any:
        errors: list[BaseException] = []
        for replica in self.replicas:
            try:
                return await replica.acall(ctx, **request)
            except Exception as e:
                if is_permanent(e):
                    raise
                errors.append(e)
        raise _all_failed("Failover", self.replicas, errors)


class Hedge(Adapter):
    """Active redundancy: starts the first replica, and each further one when no replica has
    answered within ``after`` seconds of the last start (at once when one fails); returns
    the first success and cancels the rest.

    A cancelled HTTP request's connection is closed, so the service sees the
    client go; a cancelled SQL participant's transaction ends in its own time
    (its inbox keeps the effect single). A :class:`~saga.PermanentError` from any
    replica ends the call at once; when all fail it raises
    :class:`~saga.adapters.AllReplicasFailed`. The call log shows every leg,
    the losers as ``cancelled``.

    Replicas run as asyncio tasks; a plain call runs them on an event loop of
    its own. ``after`` is real time, also under a virtual clock.
    """

    kind: ClassVar[str] = "hedge"

    def __init__(self, replicas: Sequence[Adapter], after: float = 0.05) -> None:
        self.replicas = _replicas("Hedge", replicas)
        if isinstance(after, bool) or not isinstance(after, int | float) or math.isnan(after) or after < 0:
            raise InvalidAdapter(f"Hedge: after must be a number of seconds >= 0, not {after!r}")
        self.after = float(after)

    @property
    def target(self) -> str:
        return " | ".join(r.target for r in self.replicas)

    def __call__(self, ctx: StepContext, /, **request: Any) -> Any:
        return run_coroutine(self.acall(ctx, **request))

    async def acall(self, ctx: StepContext, /, **request: Any) -> Any:
        running: dict[asyncio.Task[Any], int] = {}
        errors: dict[int, BaseException] = {}
        started = 0

        def launch() -> None:
            nonlocal started
            task = asyncio.ensure_future(self.replicas[started].acall(ctx, **request))
            running[task] = started
            started += 1

        launch()
        try:
            while running:
                more = started < len(self.replicas)
                done, _ = await asyncio.wait(
                    running, timeout=self.after if more else None, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    launch()  # nobody answered in time: hedge
                    continue
                for task in sorted(done, key=running.__getitem__):
                    index = running.pop(task)
                    error = task.exception()
                    if error is None:
                        return task.result()
                    if is_permanent(error):
                        raise error
                    errors[index] = error
                    if started < len(self.replicas):
                        launch()  # a failure is an answer: do not wait for the next leg
            raise _all_failed("Hedge", self.replicas[:started], [errors[i] for i in range(started)])
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

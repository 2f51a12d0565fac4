"""Redundancy: passive (``Failover``: standbys in order) and active (``Hedge``: replicas in
parallel, the first good answer wins)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from saga.definition import StepContext

from .base import Adapter, is_permanent, run_coroutine
from .errors import AllReplicasFailed, CompensationFailed, InvalidAdapter, InvalidRequest

__all__ = ["Failover", "Hedge"]


def _replicas(owner: str, replicas: Any, what: str = "replicas") -> tuple[Adapter, ...]:
    if isinstance(replicas, Adapter) or not isinstance(replicas, Sequence) or isinstance(replicas, str):
        raise InvalidAdapter(f"{owner}: {what} must be a list of adapters, not {replicas!r}")
    out = tuple(replicas)
    if not out:
        raise InvalidAdapter(f"{owner}: needs at least one replica")
    for r in out:
        if not isinstance(r, Adapter):
            raise InvalidAdapter(f"{owner}: {what} must be adapters (Http, SqlParticipant, …), not {r!r}")
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
    the first success and stops the rest.

    A stopped HTTP request's connection is closed, so the service sees the
    client go, but it may have acted: its leg is logged ``cancelled``, its
    effect in doubt. A call on a worker thread (a plain
    :class:`~saga.adapters.Function`, a :class:`~saga.adapters.SqlParticipant`)
    cannot be stopped: its leg runs to its end and is logged as it ended (``ok``
    if it answered after the winner). A
    :class:`~saga.PermanentError` from any replica ends the call at once; when
    all fail it raises :class:`~saga.adapters.AllReplicasFailed`. The hedge
    returns only when every leg it started has ended.

    Every leg carries the step's idempotency key. Replicas of one service that
    keep the effect single on that key need nothing more: the step's own
    compensation undoes the one effect. When each replica's effect is its own,
    give ``compensate``, one adapter per replica: after the race, the hedge
    undoes every leg but the winner that answered (``ctx.result`` is its
    answer) or was stopped in flight (``ctx.result`` is ``None``), as
    :meth:`Saga.call <saga.Saga.call>` undoes a step. ``compensate_request`` is
    the keywords of that call, a mapping or a function of the context, as
    there; the context's ``idempotency_key`` is the step's key followed by
    ``/replica-N/compensate``. Those calls are in the call log too. A
    compensation that fails makes the call raise
    :class:`~saga.adapters.CompensationFailed` (retryable, in doubt).

    Replicas run as asyncio tasks; a plain call runs them on an event loop of
    its own. ``after`` is real time, also under a virtual clock.
    """

    kind: ClassVar[str] = "hedge"

    def __init__(
        self,
        replicas: Sequence[Adapter],
        after: float = 0.05,
        *,
        compensate: Sequence[Adapter] | None = None,
        compensate_request: Mapping[str, Any] | Callable[[StepContext], Mapping[str, Any]] | None = None,
    ) -> None:
        self.replicas = _replicas("Hedge", replicas)
        if isinstance(after, bool) or not isinstance(after, int | float) or math.isnan(after) or after < 0:
            raise InvalidAdapter(f"Hedge: after must be a number of seconds >= 0, not {after!r}")
        self.after = float(after)
        self.compensate = None if compensate is None else _replicas("Hedge", compensate, "compensate")
        if self.compensate is not None and len(self.compensate) != len(self.replicas):
            raise InvalidAdapter(
                f"Hedge: compensate needs one compensation per replica ({len(self.replicas)}), "
                f"not {len(self.compensate)}"
            )
        if compensate_request is not None:
            if self.compensate is None:
                raise InvalidAdapter("Hedge: compensate_request without compensate")
            if not (callable(compensate_request) or _keywords(compensate_request)):
                raise InvalidAdapter(
                    "Hedge: compensate_request must be a mapping of keywords or a function of the "
                    f"context, not {compensate_request!r}"
                )
        self.compensate_request = compensate_request

    @property
    def target(self) -> str:
        return " | ".join(r.target for r in self.replicas)

    def __call__(self, ctx: StepContext, /, **request: Any) -> Any:
        return run_coroutine(self.acall(ctx, **request))

    async def acall(self, ctx: StepContext, /, **request: Any) -> Any:
        legs: list[asyncio.Task[Any]] = []
        try:
            winner, answer = await self._race(ctx, request, legs)
        except asyncio.CancelledError:  # the attempt was abandoned: its own compensation follows
            await _stop(legs)
            raise
        except Exception:
            await self._undo_losers(ctx, legs, winner=None)
            raise
        await self._undo_losers(ctx, legs, winner=winner)
        return answer

    async def _race(
        self, ctx: StepContext, request: dict[str, Any], legs: list[asyncio.Task[Any]]
    ) -> tuple[int, Any]:
        """Run the legs (appended to ``legs``) until one answers: its index and answer."""
        running: dict[asyncio.Task[Any], int] = {}
        errors: dict[int, BaseException] = {}

        def launch() -> None:
            task = asyncio.ensure_future(self.replicas[len(legs)].acall(ctx, **request))
            running[task] = len(legs)
            legs.append(task)

        launch()
        while running:
            more = len(legs) < len(self.replicas)
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
                    return index, task.result()
                if is_permanent(error):
                    raise error
                errors[index] = error
                if len(legs) < len(self.replicas):
                    launch()  # a failure is an answer: do not wait for the next leg
        raise _all_failed("Hedge", self.replicas[: len(legs)], [errors[i] for i in range(len(legs))])

    async def _undo_losers(
        self, ctx: StepContext, legs: list[asyncio.Task[Any]], *, winner: int | None
    ) -> None:
        """Stop the legs still running, wait for every one to end, and undo (with
        ``compensate``) those but the winner that answered or were stopped in flight."""
        await _stop(legs)
        if self.compensate is None:
            return
        failed: list[tuple[int, BaseException]] = []
        for index, leg in enumerate(legs):
            if index == winner or (not leg.cancelled() and leg.exception() is not None):
                continue  # the winner stands; a leg that failed did nothing to undo
            undo = replace(
                ctx, result=None if leg.cancelled() else leg.result(), compensating=True,
                idempotency_key=f"{ctx.idempotency_key}/replica-{index + 1}/compensate",
            )
            try:
                await self.compensate[index].acall(undo, **self._undo_request(undo))
            except Exception as e:
                failed.append((index, e))
        if failed:
            parts = "; ".join(
                f"replica {i + 1} ({self.replicas[i].target}): {type(e).__name__}: {e}" for i, e in failed
            )
            raise CompensationFailed(
                f"Hedge: could not undo {len(failed)} losing replica(s) that answered or may have: {parts}",
                [e for _, e in failed],
            ) from failed[0][1]

    def _undo_request(self, ctx: StepContext) -> dict[str, Any]:
        made = self.compensate_request
        if callable(made):
            made = made(ctx)
            if not _keywords(made):
                raise InvalidRequest(
                    f"Hedge: compensate_request returned {made!r}, not a mapping of keywords"
                )
        return dict(made or {})


def _keywords(value: object) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)


async def _stop(legs: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel the legs still running and wait until every one has ended (a plain function's
    leg runs to its end)."""
    for leg in legs:
        leg.cancel()
    if legs:
        await asyncio.gather(*legs, return_exceptions=True)

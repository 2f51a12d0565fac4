"""``Function``: any Python function as an adapter, so wrappers can stand around it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from saga.definition import StepContext

from .base import Adapter, recorded, run_coroutine, run_to_end
from .errors import InvalidAdapter

__all__ = ["Function"]


class Function(Adapter):
    """Calls ``fn(**request)`` (plain or ``async``) and records it as one call to ``target``.

    For services reached through a client library of their own, and for
    simulations: ``Faulty(Function(reserve, target="inventory"), fail_rate=0.1)``.
    Errors propagate as ``fn`` raises them. A plain ``fn`` called from
    :meth:`acall` runs on a worker thread, which cannot be stopped: a call
    cancelled meanwhile (a hedge that no longer needs it) waits for ``fn`` and
    answers as it does, so the call log says how it really ended.
    """

    kind: ClassVar[str] = "function"

    def __init__(self, fn: Callable[..., Any], *, target: str | None = None) -> None:
        if not callable(fn):
            raise InvalidAdapter(f"Function: expected a function, not {fn!r}")
        if target is not None and (not isinstance(target, str) or not target):
            raise InvalidAdapter(f"Function: target must be a non-empty string, not {target!r}")
        self.fn = fn
        self._target = target or getattr(fn, "__qualname__", None) or repr(fn)
        self._is_async = inspect.iscoroutinefunction(fn)

    @property
    def target(self) -> str:
        return self._target

    def __call__(self, ctx: StepContext, /, **request: Any) -> Any:
        with recorded(ctx, self.kind, self.target):
            value = self.fn(**request)
            if self._is_async:
                value = run_coroutine(value)
            return value

    async def acall(self, ctx: StepContext, /, **request: Any) -> Any:
        if self._is_async:
            with recorded(ctx, self.kind, self.target):
                return await self.fn(**request)
        return await run_to_end(self, ctx, **request)  # recorded on that thread

"""What an attempt's adapters did: one record per call to the outside world.

An attempt's :class:`CallLog` collects a :class:`Call` for every request an
adapter made (each replica of a failover, each leg of a hedge, a call a
circuit breaker refused), in the order the calls *started*, even when they
ran concurrently. The coordinator hands a fresh log to every attempt in its
:class:`~saga.StepContext` and records ``log.calls()`` with the attempt's
outcome, so failovers, hedges and open breakers are part of the audit trail.
The log's ``mask`` hides the secrets the attempt was given in what it records.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from saga.codec import printable
from saga.text import count

if TYPE_CHECKING:
    from saga.clock import Clock

__all__ = ["Call", "CallAdapter", "CallError", "CallLog", "Outcome", "PendingCall", "as_is", "error_text"]

Outcome = Literal["ok", "error", "cancelled", "rejected"]
"""``ok``; ``error`` (it failed); ``cancelled`` (a hedge no longer needed it, or the
attempt ended while it ran); ``rejected`` (a circuit breaker refused it without calling)."""

_MESSAGE_LIMIT = 500


def as_is(text: str) -> str:
    """The mask of an attempt that was given no secret: ``text`` unchanged."""
    return text


def error_text(error: BaseException, *, limit: int, mask: Callable[[str], str] = as_is) -> str:
    """``str(error)`` as a record keeps it: passed through ``mask`` first, then made storable
    (see :func:`~saga.codec.printable`) and cut to ``limit`` characters, saying how long it was.
    A ``__str__`` that fails gives a message saying so."""
    try:
        text = str(error)
    except Exception as e:
        return f"<the error's message could not be read: {type(e).__name__}>"
    # Only the start of a long text is masked: what is cut off is never stored, and masking
    # seldom shortens a text to half its length.
    message = printable(mask(text[:2 * limit]))
    if len(message) > limit or len(text) > 2 * limit:
        message = message[:limit] + f"… ({len(text)} characters)"
    return message


@runtime_checkable
class CallAdapter(Protocol):
    """What :meth:`Saga.call <saga.Saga.call>` needs of an adapter (every
    :class:`saga.adapters.Adapter` is one): a plain call and an ``async`` one,
    each taking the step's context first and the request as keywords, and a
    ``target`` saying where calls go."""

    @property
    def target(self) -> str:
        """Where calls go (never with a password)."""
        ...

    def __call__(self, ctx: Any, /, **request: Any) -> Any:
        """Make the call from a plain step."""
        ...

    async def acall(self, ctx: Any, /, **request: Any) -> Any:
        """Make the call from an ``async`` step."""
        ...


class CallError(BaseModel):
    """How a call failed: the exception's type and message, and the HTTP status if there was one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    message: str
    status: int | None = None

    @classmethod
    def of(cls, error: BaseException, *, mask: Callable[[str], str] = as_is) -> CallError:
        """Describe ``error`` (its message through ``mask`` and cut to 500 characters, see
        :func:`error_text`; ``status`` from an integer ``status`` attribute, as HTTP errors
        carry)."""
        status = getattr(error, "status", None)
        return cls(
            type=_type_name(error),
            message=error_text(error, limit=_MESSAGE_LIMIT, mask=mask),
            status=status if isinstance(status, int) and not isinstance(status, bool) else None,
        )


class Call(BaseModel):
    """One call an adapter made during an attempt (a frozen value; JSON with :meth:`to_json`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    adapter: str
    """What kind of adapter made it: ``"http"``, ``"sql"``, ``"function"``, …"""
    target: str
    """Where it went: a URL or a database, never with a password, nor with a secret the attempt
    was given (see :class:`CallLog`)."""
    outcome: Outcome
    error: CallError | None = None
    started_at: datetime
    duration: float
    """Seconds, on the clock of the step's context (virtual time under a virtual clock)."""

    def to_json(self) -> dict[str, Any]:
        """The call as a JSON object (times in ISO 8601), as event data stores it."""
        return self.model_dump(mode="json")


class PendingCall:
    """A call that has started; :meth:`finish` once, when it ends."""

    __slots__ = ("_clock", "_log", "adapter", "call", "started_at", "target")

    def __init__(self, log: CallLog, clock: Clock, adapter: str, target: str) -> None:
        self._log, self._clock = log, clock
        self.adapter, self.target = adapter, log.mask(target)
        self.started_at = clock.now()
        self.call: Call | None = None

    def finish(self, outcome: Outcome, error: BaseException | None = None) -> Call:
        """Record how the call ended (only the first finish counts) and return the record."""
        ended = self._clock.now()
        with self._log._lock:
            if self.call is None:
                self.call = self._record(outcome, error, ended)
            return self.call

    def _record(self, outcome: Outcome, error: BaseException | None, ended: datetime) -> Call:
        return Call(
            adapter=self.adapter,
            target=self.target,
            outcome=outcome,
            error=None if error is None else CallError.of(error, mask=self._log.mask),
            started_at=self.started_at,
            duration=max((ended - self.started_at).total_seconds(), 0.0),
        )


class CallLog:
    """The calls of one attempt, in the order they started. Thread-safe.

    An adapter calls :meth:`begin` when it sends a request and
    :meth:`PendingCall.finish` when it has the answer; :meth:`calls` is what
    the attempt's outcome records. A call still running when :meth:`calls` is
    read (a plain step abandoned at its timeout) is reported ``cancelled``,
    timed up to that moment.

    ``mask`` hides the secrets the attempt was given (see
    :class:`saga.secrets.masking.Mask`): every call's target and error message pass
    through it as they are recorded, and whatever else reports on the attempt
    (its error, its telemetry) uses the same one.
    """

    __slots__ = ("__weakref__", "_lock", "_pending", "mask")

    def __init__(self, *, mask: Callable[[str], str] | None = None) -> None:
        self.mask: Callable[[str], str] = mask or as_is
        self._lock = threading.Lock()
        self._pending: list[PendingCall] = []

    def begin(self, adapter: str, target: str, clock: Clock) -> PendingCall:
        """Note a call that starts now (on ``clock``); finish the returned handle when it ends."""
        pending = PendingCall(self, clock, adapter, target)
        with self._lock:
            self._pending.append(pending)
        return pending

    def calls(self) -> list[Call]:
        """Every call so far, in the order they started."""
        with self._lock:
            pending = list(self._pending)
        out = []
        for p in pending:
            call = p.call
            out.append(call if call is not None else p._record("cancelled", None, p._clock.now()))
        return out

    def to_json(self) -> list[dict[str, Any]]:
        """:meth:`calls` as JSON objects."""
        return [c.to_json() for c in self.calls()]

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def __repr__(self) -> str:
        return f"<CallLog of {count(len(self), 'call')}>"


def _type_name(error: BaseException) -> str:
    cls = type(error)
    if cls.__module__ in ("builtins", "saga.errors") or cls.__module__.startswith("saga.adapters"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"

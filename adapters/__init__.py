"""Adapters: how steps reach external services (imported as ``saga.adapters``).

An adapter turns the coordinator's at-least-once attempts into effects that
happen once (it passes the step's idempotency key on), sorts failures into
retryable and permanent, and records every call it makes in the attempt's
call log. Call one from a plain step as ``adapter(ctx, **request)`` and from
an ``async`` step as ``await adapter.acall(ctx, **request)``; the wrappers
(:class:`Failover`, :class:`Hedge`, :class:`CircuitBreaker`, :class:`Faulty`)
take the same call and may stand inside one another.
"""

from .base import Adapter
from .breaker import BreakerState, CircuitBreaker
from .errors import (
    AdapterError,
    AllReplicasFailed,
    CallTimedOut,
    CircuitOpen,
    CompensationFailed,
    ConnectionFailed,
    HttpBodyTooLarge,
    HttpError,
    HttpRejected,
    InjectedFault,
    InvalidAdapter,
    InvalidRequest,
    MissingDependency,
    ParticipantRejected,
    ParticipantUnavailable,
)
from .faults import Faulty
from .function import Function
from .http import Http
from .redundancy import Failover, Hedge
from .sql import SqlParticipant

__all__ = [
    "Adapter",
    "AdapterError",
    "AllReplicasFailed",
    "BreakerState",
    "CallTimedOut",
    "CircuitBreaker",
    "CircuitOpen",
    "CompensationFailed",
    "ConnectionFailed",
    "Failover",
    "Faulty",
    "Function",
    "Hedge",
    "Http",
    "HttpBodyTooLarge",
    "HttpError",
    "HttpRejected",
    "InjectedFault",
    "InvalidAdapter",
    "InvalidRequest",
    "MissingDependency",
    "ParticipantRejected",
    "ParticipantUnavailable",
    "SqlParticipant",
]

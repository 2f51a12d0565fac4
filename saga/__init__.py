"""An event-sourced saga coordinator.

Model a long-running business transaction as a :class:`Saga` of steps, each
with an optional compensation; a :class:`Coordinator` runs it, recording
every attempt in an append-only :class:`EventStore`, retrying by policy,
enforcing timeouts and deadlines, and undoing completed steps newest first
when the saga cannot finish.
"""

from saga.clock import Clock, SystemClock, VirtualClock
from saga.coordinator import Coordinator
from saga.definition import Saga, Step, StepContext
from saga.errors import (
    ConcurrencyError,
    DefinitionError,
    DefinitionMismatch,
    InvalidInput,
    InvalidOperation,
    LeaseHeld,
    PayloadTooLarge,
    PermanentError,
    PolicyError,
    SagaError,
    SagaIdConflict,
    SagaNotFound,
    StoreError,
    TargetError,
    UnknownSagaName,
)
from saga.policies import Retry
from saga.state import ErrorInfo, SagaStatus, SagaView, StepView
from saga.store import EventLog, EventStore, SagaSummary, StoredEvent

__all__ = [
    "Clock",
    "ConcurrencyError",
    "Coordinator",
    "DefinitionError",
    "DefinitionMismatch",
    "ErrorInfo",
    "EventLog",
    "EventStore",
    "InvalidInput",
    "InvalidOperation",
    "LeaseHeld",
    "PayloadTooLarge",
    "PermanentError",
    "PolicyError",
    "Retry",
    "Saga",
    "SagaError",
    "SagaIdConflict",
    "SagaNotFound",
    "SagaStatus",
    "SagaSummary",
    "SagaView",
    "Step",
    "StepContext",
    "StepView",
    "StoreError",
    "StoredEvent",
    "SystemClock",
    "TargetError",
    "UnknownSagaName",
    "VirtualClock",
]

"""An event-sourced saga coordinator: the public names of the library.

Model a long-running business transaction as a :class:`Saga` of steps, each
with an optional compensation; a :class:`Coordinator` runs it, recording
every attempt in an append-only :class:`EventStore`, retrying by policy,
enforcing timeouts and deadlines, and undoing completed steps newest first
when the saga cannot finish.

This module is the public surface, with :mod:`saga.adapters`,
:mod:`saga.testing` and :mod:`saga.simulate`; every other module may change.
Besides the coordinator it holds what an operator does to sagas in a store
(:func:`cancel`, :func:`retry`, :func:`skip`, :func:`fork`,
:func:`select_sagas` and :func:`act_on_sagas`, :func:`check_deploy`), how to
read one (:func:`show_timeline`; :class:`Timeline` and :class:`Attempt`, the
data of a timeline), and :func:`generate_key` for secret fields.
"""

from saga.attempts import Attempt
from saga.clock import Clock, SystemClock, VirtualClock
from saga.coordinator import Coordinator
from saga.definition import Compensation, Saga, Step, StepContext
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
from saga.inspection.history import Timeline
from saga.inspection.timeline import show as show_timeline
from saga.operators.actions import cancel, retry, skip
from saga.operators.bulk import BulkResult, Filters
from saga.operators.bulk import act as act_on_sagas
from saga.operators.bulk import select as select_sagas
from saga.operators.check import Problem
from saga.operators.check import check as check_deploy
from saga.operators.fork import fork
from saga.policies import Retry
from saga.secrets.keys import generate_key
from saga.state import ErrorInfo, SagaStatus, SagaView, StepView
from saga.store import EventLog, EventStore, SagaSummary, StoredEvent

__all__ = [
    "Attempt",
    "BulkResult",
    "Clock",
    "Compensation",
    "ConcurrencyError",
    "Coordinator",
    "DefinitionError",
    "DefinitionMismatch",
    "ErrorInfo",
    "EventLog",
    "EventStore",
    "Filters",
    "InvalidInput",
    "InvalidOperation",
    "LeaseHeld",
    "PayloadTooLarge",
    "PermanentError",
    "PolicyError",
    "Problem",
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
    "Timeline",
    "UnknownSagaName",
    "VirtualClock",
    "act_on_sagas",
    "cancel",
    "check_deploy",
    "fork",
    "generate_key",
    "retry",
    "select_sagas",
    "show_timeline",
    "skip",
]

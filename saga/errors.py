"""The exceptions a user of the library can catch.

Everything the library raises on purpose derives from :class:`SagaError`;
database driver errors are translated into :class:`StoreError` at the border.
:class:`PermanentError` is different: user code raises it from a step to say
"retrying will not help".
"""

from __future__ import annotations


class SagaError(Exception):
    """Root of every error this library raises."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or type(self).__name__).strip().splitlines()[0])


class DefinitionError(SagaError):
    """A saga definition is invalid."""


class PolicyError(DefinitionError):
    """A retry or timeout policy is invalid."""


class UnknownSagaName(SagaError):
    """No saga with this name is registered with the coordinator."""


class DefinitionMismatch(SagaError):
    """A saga's log names a step its registered definition does not have.

    The coordinator refuses to drive such a saga rather than guess: a step
    renamed or removed without a new saga version would otherwise be left
    uncompensated.
    """


class InvalidInput(SagaError):
    """The input does not fit the saga's input model, or is not JSON."""


class SagaNotFound(SagaError):
    """No saga has this id."""


class SagaIdConflict(SagaError):
    """A saga with this id exists with a different name or input."""


class InvalidOperation(SagaError):
    """The operator action is not allowed in the saga's current status."""


class ConcurrencyError(SagaError):
    """Another writer appended to this saga first: the expected sequence number is stale."""


class LeaseHeld(ConcurrencyError):
    """Another coordinator holds a live lease on this saga."""


class StoreError(SagaError):
    """The event store failed (the database driver's error is the cause)."""


class PayloadTooLarge(SagaError):
    """An input, output or error is larger than the store accepts."""


class TargetError(SagaError):
    """A worker target could not be imported or holds no saga."""


class PermanentError(Exception):
    """Raised by a step or compensation: the failure is final, skip remaining attempts."""

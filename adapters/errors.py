"""What adapters raise: retryable failures under :class:`AdapterError`, final ones as
:class:`~saga.PermanentError`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from saga.errors import DefinitionError, PermanentError, SagaError

__all__ = [
    "AdapterError",
    "AllReplicasFailed",
    "CallTimedOut",
    "CircuitOpen",
    "CompensationFailed",
    "ConnectionFailed",
    "HttpBodyTooLarge",
    "HttpError",
    "HttpRejected",
    "InjectedFault",
    "InvalidAdapter",
    "InvalidRequest",
    "MissingDependency",
    "ParticipantRejected",
    "ParticipantUnavailable",
]


class InvalidAdapter(DefinitionError):
    """An adapter was built with an invalid option."""


class InvalidRequest(InvalidAdapter, PermanentError):
    """A call was made with arguments the adapter cannot use (final: a retry would repeat them)."""


class MissingDependency(SagaError):
    """An adapter needs a package that is not installed."""


class AdapterError(SagaError):
    """A call to an external service failed in a way a later attempt may not.

    ``retry_after`` is the earliest time (timezone-aware) at which the service
    asked to be called again (an HTTP ``Retry-After``, or when an open circuit
    breaker lets a trial through), or ``None``. The coordinator starts the next
    attempt no sooner than that, even if the retry policy's wait is shorter.
    """

    def __init__(self, message: str | None = None, *, retry_after: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConnectionFailed(AdapterError):
    """The service could not be reached, or the connection broke before an answer."""


class CallTimedOut(AdapterError):
    """The service did not answer within the adapter's timeout."""


class HttpError(AdapterError):
    """The service answered 408, 429 or 5xx: worth trying again. ``status`` is the code."""

    def __init__(self, message: str, *, status: int, retry_after: datetime | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status


class HttpRejected(PermanentError):
    """The service refused the request (a 4xx other than 408 and 429): trying again will not help."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class HttpBodyTooLarge(PermanentError):
    """The service answered 2xx with a body larger than the adapter reads (its ``max_body``).

    Final: another attempt would get the same answer. The service acted but its
    answer cannot be used, so the attempt's effect is in doubt (``in_doubt``)
    and the step is compensated. ``status`` is the code, ``limit`` the bound in bytes.
    """

    in_doubt = True

    def __init__(self, message: str, *, status: int, limit: int) -> None:
        super().__init__(message)
        self.status = status
        self.limit = limit


class ParticipantUnavailable(AdapterError):
    """The participant's database could not be reached, or the transaction hit a transient error."""


class ParticipantRejected(PermanentError):
    """The participant's database refused the work (a constraint, bad SQL): trying again will not help."""


class CircuitOpen(AdapterError):
    """A circuit breaker is open: the call was refused without reaching the service.

    ``retry_after`` is when the breaker lets its next trial call through.
    """


class InjectedFault(AdapterError):
    """A failure :class:`~saga.adapters.Faulty` made up (for tests, demos and simulation)."""


class AllReplicasFailed(AdapterError):
    """Every replica of a failover or hedge failed; ``errors`` holds each one's error, in order.

    ``retry_after`` is the earliest time any replica may be called again: the
    soonest of theirs, or ``None`` if one of them named no time.
    """

    def __init__(self, message: str, errors: Sequence[BaseException]) -> None:
        times = [getattr(e, "retry_after", None) for e in errors]
        known = [t for t in times if isinstance(t, datetime)]
        super().__init__(
            message, retry_after=min(known) if known and len(known) == len(times) else None
        )
        self.errors = tuple(errors)


class CompensationFailed(AdapterError):
    """A hedge could not undo a losing replica that answered anyway (or may have: it was
    cancelled in flight); ``errors`` holds each failed compensation's error, in order.

    Retryable, so the step's next attempt hedges again under the same
    idempotency key; its effect is in doubt (``in_doubt``), so if the step
    gives up it is compensated all the same.
    """

    in_doubt = True

    def __init__(self, message: str, errors: Sequence[BaseException]) -> None:
        super().__init__(message)
        self.errors = tuple(errors)


# Their public home: error records and tracebacks say saga.adapters.HttpError, not the module.
for _name in __all__:
    globals()[_name].__module__ = "saga.adapters"
del _name

"""The event vocabulary: one frozen pydantic model per event type.

Events are the only state. Each model carries the schema version of its
``data``; a reader that meets an older version upgrades it in :func:`parse`.
Times in event data come from the coordinator's clock (they drive
decisions); the store adds ``recorded_at`` from the database's clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, JsonValue

from saga.calls import Call

__all__ = [
    "EVENT_TYPES",
    "CompensationAttemptFailed",
    "CompensationAttemptStarted",
    "CompensationFailed",
    "CompensationStarted",
    "Event",
    "SagaCancelRequested",
    "SagaCompensated",
    "SagaCompleted",
    "SagaFailed",
    "SagaForked",
    "SagaParked",
    "SagaRetryRequested",
    "SagaStarted",
    "StepAttemptFailed",
    "StepAttemptStarted",
    "StepCompensated",
    "StepCopied",
    "StepFailed",
    "StepSkipped",
    "StepSucceeded",
    "parse",
]


class Event(BaseModel):
    """Base of every event: frozen, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: ClassVar[int] = 1
    at: datetime

    @classmethod
    def type_name(cls) -> str:
        """The event's ``type`` as stored in the log."""
        return cls.__name__

    def to_data(self) -> dict[str, Any]:
        """The JSON object stored in the log's ``data`` column."""
        return self.model_dump(mode="json")


class _Attempt(Event):
    step: str
    attempt: int


class _AttemptStart(_Attempt):
    timeout_at: datetime | None = None


class _Outcome(_Attempt):
    """An attempt's end; ``calls`` are what its adapters did, in the order the calls started.

    Schema version 2 added ``calls``; version 1 events read with none.
    """

    schema_version: ClassVar[int] = 2
    calls: tuple[Call, ...] = ()


class _AttemptFailure(_Outcome):
    error_type: str
    message: str
    timed_out: bool = False
    lost: bool = False
    retried: bool
    next_attempt_at: datetime | None = None
    gave_up: str | None = None
    """Why the attempt is not retried (``None`` when it is)."""


class SagaStarted(Event):
    """A saga was started with this input; the first event of every saga.

    ``trace`` is the W3C trace context (``traceparent``, ``tracestate``) of the
    code that started it, if it ran in a span; ``forked_from`` names the saga and
    step an operator forked it from. Both are version 2; version 1 data has
    neither and reads as ``None``.
    """

    schema_version: ClassVar[int] = 2
    name: str
    version: int
    input: JsonValue = None
    deadline: datetime | None = None
    trace: dict[str, str] | None = None
    forked_from: dict[str, str] | None = None
    """``{"id": ..., "step": ...}`` when an operator forked this saga from another one."""

    def to_data(self) -> dict[str, Any]:
        """As :meth:`Event.to_data`, leaving ``trace`` and ``forked_from`` out when absent."""
        data = super().to_data()
        for optional in ("trace", "forked_from"):
            if data[optional] is None:
                del data[optional]
        return data


class StepAttemptStarted(_AttemptStart):
    """A forward attempt of a step is about to run."""


class StepAttemptFailed(_AttemptFailure):
    """A forward attempt failed, timed out or was lost; says whether and when it is retried."""


class StepSucceeded(_Outcome):
    """A step's attempt succeeded with this result."""

    result: JsonValue = None


class StepFailed(Event):
    """A step failed for good; compensation follows."""

    step: str
    reason: str


class CompensationStarted(Event):
    """The saga stops going forward and undoes its completed steps, newest first."""

    reason: str
    step: str | None = None


class CompensationAttemptStarted(_AttemptStart):
    """An attempt of a step's compensation is about to run."""


class CompensationAttemptFailed(_AttemptFailure):
    """A compensation attempt failed, timed out or was lost; says whether and when it is retried."""


class StepCompensated(_Outcome):
    """A step's compensation succeeded."""


class CompensationFailed(Event):
    """A compensation gave up; the saga needs an operator."""

    step: str
    reason: str


class SagaCompleted(Event):
    """Every step succeeded."""


class SagaCompensated(Event):
    """Every step that succeeded or was in doubt has been undone."""


class SagaFailed(Event):
    """A compensation gave up; an operator's retry resumes compensating."""

    step: str
    reason: str


class SagaRetryRequested(Event):
    """An operator asked a failed saga to resume its compensation."""

    # version 2: by (absent in version 1 data, read as None)
    schema_version: ClassVar[int] = 2
    reason: str = ""
    by: str | None = None


class SagaCancelRequested(Event):
    """An operator asked a running saga to stop and compensate."""

    schema_version: ClassVar[int] = 2
    reason: str = ""
    by: str | None = None


class StepSkipped(Event):
    """An operator marked a stuck step as done, with the result it should have had."""

    step: str
    result: JsonValue = None
    by: str
    reason: str = ""


class StepCopied(Event):
    """A forked saga took a step as succeeded with its original's result (it is not run)."""

    step: str
    result: JsonValue = None
    copied_from: str


class SagaForked(Event):
    """An operator started saga ``fork`` as a copy of this one, running from ``step``."""

    fork: str
    step: str
    by: str
    reason: str = ""


class SagaParked(Event):
    """A worker could not drive the saga, for a reason retrying at once will not fix, and
    backs off: ``reason`` says why (``error_type`` names the error).

    Recorded when the reason first appears or changes, not on every pass; the
    saga is parked while this is the last event of its log. A worker tries
    again later, each time after a longer pause; an operator's ``retry`` or
    ``cancel`` makes it due at once.
    """

    reason: str
    error_type: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        SagaStarted,
        StepAttemptStarted,
        StepAttemptFailed,
        StepSucceeded,
        StepFailed,
        CompensationStarted,
        CompensationAttemptStarted,
        CompensationAttemptFailed,
        StepCompensated,
        CompensationFailed,
        SagaCompleted,
        SagaCompensated,
        SagaFailed,
        SagaRetryRequested,
        SagaCancelRequested,
        StepSkipped,
        StepCopied,
        SagaForked,
        SagaParked,
    )
}


def parse(type_: str, data: dict[str, Any], schema_version: int = 1) -> Event:
    """Rebuild an event from its stored ``type``, ``data`` and schema version."""
    cls = EVENT_TYPES.get(type_)
    if cls is None:
        raise ValueError(f"unknown event type {type_!r}")
    if schema_version > cls.schema_version:
        raise ValueError(
            f"event {type_} has schema version {schema_version}, newer than this "
            f"library knows ({cls.schema_version}); upgrade the library"
        )
    return cls.model_validate(data)

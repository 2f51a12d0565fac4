"""Operator actions: cancel a running saga, retry a failed one, skip its stuck step.

An operator appends without holding the saga's lease: the append is fenced
by ``seq`` alone, and a coordinator driving the saga meanwhile notices the
new event at its next append and reloads. Cancel and retry need no
definition, so the command line can do them with the store alone; a value
an operator gives a saga (the result of a skipped step) is checked against
the saga's definition and its secret fields sealed, so that call takes the
definitions (:func:`definition_for`). Every action records who asked
(``by``, the login user unless given) and why (``reason``) in its event.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal

from saga import events as ev
from saga._engine.reading import load_state
from saga.clock import Clock
from saga.codec import InvalidValue, to_json_value
from saga.definition import Saga
from saga.errors import ConcurrencyError, InvalidInput, InvalidOperation
from saga.secrets.sealing import skipped_result
from saga.state import Phase, SagaState, SagaStatus, SagaView
from saga.store.base import EventLog
from saga.text import article

__all__ = [
    "APPLIES_TO", "Request", "cancel", "changes", "check_by", "check_reason", "current_step",
    "default_by", "definition_for", "find_definition", "request", "retry", "skip",
]

Request = Literal["cancel", "retry"]
"""An operator's request that a bulk command can make of many sagas."""

APPLIES_TO: dict[Request, SagaStatus] = {"cancel": SagaStatus.RUNNING, "retry": SagaStatus.FAILED}
"""The status of the sagas each request acts on."""

_ATTEMPTS = 8
_MAX_BY = 200


def default_by() -> str:
    """Who acts when no one is named: the login user, or ``"unknown"`` if there is none."""
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError):  # no $USER and no passwd entry (a container, say)
        return "unknown"


def cancel(
    store: EventLog, clock: Clock, saga_id: str, *, reason: str = "", by: str | None = None
) -> SagaView:
    """Stop a running saga's forward progress; a worker then compensates it.

    Cancelling a saga already cancelled is a no-op; a saga that is not
    running raises :class:`~saga.errors.InvalidOperation`. ``by`` (default:
    the login user) and ``reason`` are recorded in the event.
    """
    return request(store, clock, saga_id, "cancel", reason=reason, by=by)[0]


def retry(
    store: EventLog, clock: Clock, saga_id: str, *, reason: str = "", by: str | None = None
) -> SagaView:
    """Resume a failed saga's compensation, with a fresh attempt budget; or make a parked
    saga (one a worker could not drive: :attr:`SagaView.parked <saga.SagaView.parked>`) due
    at once, say once its key or definition is fixed."""
    return request(store, clock, saga_id, "retry", reason=reason, by=by)[0]


def request(
    store: EventLog, clock: Clock, saga_id: str, kind: Request, *, reason: str = "",
    by: str | None = None,
) -> tuple[SagaView, bool]:
    """:func:`cancel` or :func:`retry`, saying also whether an event was appended
    (``False``: the saga was already cancelled)."""
    text, who = check_reason(reason), check_by(by)
    if kind == "cancel":
        return _append(
            store, clock, saga_id,
            allowed=APPLIES_TO[kind],
            event=lambda now, _: ev.SagaCancelRequested(reason=text, by=who, at=now),
            already=_cancelled,
            verb="cancelled",
        )
    if kind == "retry":
        return _append(
            store, clock, saga_id,
            allowed=APPLIES_TO[kind],
            event=lambda now, _: ev.SagaRetryRequested(reason=text, by=who, at=now),
            already=lambda s: False,
            verb="retried",
            or_parked=True,
        )
    raise InvalidInput(f"unknown request {kind!r}; choose from cancel, retry")


def changes(state: SagaState, kind: Request) -> bool:
    """Whether :func:`request` ``kind`` of a saga in ``state`` appends an event: the saga is in
    the status the request acts on, and (cancel) was not cancelled already."""
    return state.status is APPLIES_TO[kind] and not (kind == "cancel" and _cancelled(state))


def _cancelled(state: SagaState) -> bool:
    return state.cancel_requested is not None


def current_step(state: SagaState) -> str | None:
    """The step an operator may skip: the one step of a running saga that has started
    (in its log) and is not done, with no attempt in flight, before compensation began.

    That step is waiting for a retry (in a log a worker stopped writing
    mid-way, it may also have given up or failed for good with compensation
    not begun yet). A step with an attempt in flight is not skippable: its
    outcome would be lost. ``None`` when there is no such step.
    """
    if state.status is not SagaStatus.RUNNING or state.cancel_requested is not None:
        return None
    for s in state.steps.values():
        if s.forward.phase in (Phase.WAITING, Phase.GAVE_UP, Phase.FAILED):
            return s.name
    return None


def find_definition(state: SagaState, sagas: Iterable[Saga]) -> Saga | None:
    """The definition among ``sagas`` with the name and version of ``state``'s saga, if any."""
    return next((s for s in sagas if (s.name, s.version) == (state.name, state.version)), None)


def definition_for(state: SagaState, sagas: Iterable[Saga], what: str) -> Saga:
    """The definition among ``sagas`` that ``state``'s saga runs (its name and version).

    Raises :class:`~saga.errors.InvalidInput` when there is none: ``what``
    (such as "a result for step 'charge'") cannot be checked against its
    models or its secret fields sealed without it.
    """
    given = list(sagas)
    saga = find_definition(state, given)
    if saga is not None:
        return saga
    names = ", ".join(sorted({f"{s.name} v{s.version}" for s in given})) or "none"
    raise InvalidInput(
        f"saga {state.saga_id}: {what} needs the definition of {state.name!r} version "
        f"{state.version}, to check it against its models and seal its secret fields "
        f"(definitions given: {names})"
    )


def skip(
    store: EventLog,
    clock: Clock,
    saga_id: str,
    step: str,
    *,
    result: Any = None,
    sagas: Iterable[Saga] = (),
    reason: str = "",
    by: str | None = None,
) -> SagaView:
    """Mark the saga's stuck step (see :func:`current_step`) as done with ``result``.

    Records :class:`~saga.events.StepSkipped`; the saga goes on with the next
    step, and later steps and compensations see ``result`` as the step's
    (the skipped step itself is compensated like one that succeeded). Wakes
    the saga so a worker continues it now. ``result`` (``None``: the step has
    none) is checked against the step's output model in the saga's
    definition, which must be among ``sagas``, and its secret fields are
    sealed with the store's keys.

    Skipping any other step raises :class:`~saga.errors.InvalidOperation`; a
    ``result`` without its definition, that does not fit the output model or
    that the log cannot store raises :class:`~saga.errors.InvalidInput`; a
    secret field with no key set raises
    :class:`~saga.secrets.keys.EncryptionKeyMissing`. Nothing is written then.
    """
    text, who = check_reason(reason), check_by(by)
    if not isinstance(step, str) or not step:
        raise InvalidInput("step must be a non-empty string")
    given = list(sagas)

    def event(now: datetime, state: SagaState) -> ev.Event:
        current = current_step(state)
        if current != step:
            raise InvalidOperation(f"saga {saga_id}: cannot skip step {step!r}: " + (
                f"the step to skip is {current!r}" if current is not None
                else _no_current(state)))
        value = None
        if result is not None:
            saga = definition_for(state, given, f"a result for step {step!r}")
            value = skipped_result(saga, step, result, saga_id, store.key_ring)
        return ev.StepSkipped(step=step, result=value, by=who, reason=text, at=now)

    return _append(store, clock, saga_id, allowed=SagaStatus.RUNNING, event=event,
                   already=lambda s: False, verb="skipped")[0]


def _no_current(state: SagaState) -> str:
    if state.cancel_requested is not None:
        return "it is cancelled"
    running = [s.name for s in state.steps.values() if s.forward.phase is Phase.RUNNING]
    if running:
        return f"an attempt of step {running[0]!r} is running; wait for its outcome"
    return "no step is stuck (the saga is between steps)"


def _append(
    store: EventLog,
    clock: Clock,
    saga_id: str,
    *,
    allowed: SagaStatus,
    event: Callable[[datetime, SagaState], ev.Event],
    already: Callable[[SagaState], bool],
    verb: str,
    or_parked: bool = False,
) -> tuple[SagaView, bool]:
    for _ in range(_ATTEMPTS):
        state = load_state(store, saga_id)
        if state.status is not allowed and not (or_parked and state.parked is not None):
            also = " or parked" if or_parked else ""
            raise InvalidOperation(
                f"saga {saga_id} is {state.status.value}: only {article(allowed.value)}{also} saga "
                f"can be {verb}"
            )
        if already(state):
            return state.view(), False
        now = clock.now()
        e = event(now, state)
        state.apply(e)
        try:
            store.append(saga_id, state.seq - 1, [e], status=state.status, wake_at=now, now=now)
        except ConcurrencyError:
            continue
        return state.view(), True
    raise ConcurrencyError(f"saga {saga_id}: the log kept moving; try again")


def check_reason(reason: object) -> str:
    """``reason`` if the log can store it (a string of at most 1000 characters), else
    :class:`~saga.errors.InvalidInput`."""
    return _text(reason, "reason", 1000)


def check_by(by: object) -> str:
    """Who acts: ``by``, or the login user when ``None``; :class:`~saga.errors.InvalidInput`
    unless a non-empty string of at most 200 characters the log can store."""
    if by is None:
        return default_by()
    text = _text(by, "by", _MAX_BY)
    if not text.strip():
        raise InvalidInput("by must name who acts (not blank)")
    return text


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidInput(f"{what} must be a string of at most {limit} characters")
    try:
        to_json_value(value)  # valid Unicode, no NUL: what the log can store
    except InvalidValue as e:
        raise InvalidInput(f"{what} cannot be stored: {str(e).removeprefix('$: ')}") from None
    return value

"""Forking a saga: a new saga of the same name and version that runs from a chosen step.

No definition is needed (the command line can fork): the step order is the
order in which the original's log first names its steps, so a fork can start
only from a step the original reached. The steps before it are recorded in
the fork's log as :class:`~saga.events.StepCopied` with the original's
results (they are not run again; a compensation of the fork undoes them like
steps that succeeded). The fork's ``SagaStarted`` names the original in
``forked_from``, and the original gets a :class:`~saga.events.SagaForked`
event naming the fork, appended fenced by ``seq`` with its status and wake-up
time unchanged: the original goes on as it was.
"""

from __future__ import annotations

import uuid
from typing import Any

from . import events as ev
from .clock import Clock
from .codec import InvalidValue, to_json_value
from .errors import ConcurrencyError, InvalidInput, InvalidOperation, SagaIdConflict
from .operator import check_by, check_reason
from .reading import load_state
from .state import Phase, SagaStatus
from .store.base import EventLog, check_saga_id

__all__ = ["SAME_INPUT", "fork"]

SAME_INPUT: Any = object()
"""The default ``input`` of :func:`fork`: the original's input."""

_ATTEMPTS = 8


def fork(
    store: EventLog,
    clock: Clock,
    saga_id: str,
    *,
    from_step: str,
    input: Any = SAME_INPUT,
    new_id: str | None = None,
    reason: str = "",
    by: str | None = None,
) -> str:
    """Start a fork of saga ``saga_id`` that runs from ``from_step`` on; returns its id.

    The fork has the original's name, version and (unless ``input`` is given)
    input; its deadline, if the original has one, is as far from its start as
    the original's was. Raises :class:`~saga.errors.InvalidOperation` if the
    original never reached ``from_step``, :class:`~saga.errors.SagaIdConflict`
    if ``new_id`` is taken, :class:`~saga.errors.InvalidInput` for input the
    log cannot store; in each case nothing is written.
    """
    text, who = check_reason(reason), check_by(by)
    if not isinstance(from_step, str) or not from_step:
        raise InvalidInput("the step to fork from must be a non-empty string")
    fork_id = check_saga_id(new_id) if new_id is not None else uuid.uuid4().hex
    original = load_state(store, saga_id)
    order = list(original.steps)  # the order the log first names them: the order they ran
    if from_step not in order:
        reached = ", ".join(repr(s) for s in order) or "none"
        raise InvalidOperation(
            f"saga {saga_id} never reached step {from_step!r} (steps it reached: {reached}); "
            "a fork can run only from one of them"
        )
    copied = order[:order.index(from_step)]
    for name in copied:  # a later step ran, so these succeeded (or were skipped or copied)
        if original.steps[name].forward.phase is not Phase.DONE:
            raise InvalidOperation(f"saga {saga_id}: step {name!r} before {from_step!r} "
                                   "did not succeed; fork from it instead")
    try:
        value = original.input if input is SAME_INPUT else to_json_value(input)
    except InvalidValue as e:
        raise InvalidInput(f"input cannot be stored: {e}") from None
    if fork_id == saga_id:
        raise SagaIdConflict(f"a fork needs a new id, not the original's {saga_id!r}")
    now = clock.now()
    deadline = None
    if original.deadline is not None and original.started_at is not None:
        deadline = now + (original.deadline - original.started_at)
    events: list[ev.Event] = [ev.SagaStarted(
        name=original.name, version=original.version, input=value, deadline=deadline, at=now,
        forked_from={"id": saga_id, "step": from_step},
    )]
    events += [ev.StepCopied(step=name, result=original.steps[name].result, copied_from=saga_id,
                             at=now) for name in copied]
    if not store.create(fork_id, events, name=original.name, version=original.version,
                        status=SagaStatus.RUNNING, wake_at=now, now=now):
        raise SagaIdConflict(f"saga id {fork_id!r} is already used; choose another for the fork")
    _name_the_fork(store, clock, saga_id, ev.SagaForked(
        fork=fork_id, step=from_step, by=who, reason=text, at=now))
    return fork_id


def _name_the_fork(store: EventLog, clock: Clock, saga_id: str, forked: ev.SagaForked) -> None:
    """Append ``forked`` to the original, leaving its status, wake-up time and lease as they are."""
    for _ in range(_ATTEMPTS):
        state = load_state(store, saga_id)
        summary = store.summary(saga_id)
        if summary.last_seq != state.seq:
            continue  # the log moved between the two reads
        try:
            store.append(saga_id, state.seq, [forked.model_copy(update={"at": clock.now()})],
                         status=state.status, wake_at=summary.wake_at, now=clock.now())
        except ConcurrencyError:
            continue
        return
    raise ConcurrencyError(f"saga {saga_id}: the log kept moving; fork {forked.fork} is started "
                           "but the original does not name it yet")

"""Forking a saga: a new saga of the same name and version that runs from a chosen step.

The step order is the order in which the original's log first names its
steps, so a fork can start only from a step the original reached. The steps
before it are recorded in the fork's log as :class:`~saga.events.StepCopied`
with the original's results (they are not run again; a compensation of the
fork undoes them like steps that succeeded). What the fork copies (the
input, the results) is sealed again under the fork's id, which needs the
store's keys when the original holds sealed values, not the definition. A
new input needs the definition: it is checked against the input model and
its secret fields sealed, and with the definition the whole fork is checked
as a worker would drive it, so that no fork is written that cannot run.

The fork's ``SagaStarted`` names the original in ``forked_from``, and the
original gets a :class:`~saga.events.SagaForked` event naming the fork,
appended fenced by ``seq`` with its status and wake-up time unchanged: the
original goes on as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from saga import events as ev
from saga._engine.decide import check_fits
from saga._engine.reading import load_state
from saga.clock import Clock
from saga.definition import Saga
from saga.errors import ConcurrencyError, InvalidInput, InvalidOperation, SagaIdConflict
from saga.operators.actions import check_by, check_reason, definition_for, find_definition
from saga.secrets.sealing import input_context, resealed, result_context, stored_input, unreadable
from saga.state import Phase, SagaState, SagaStatus, fold
from saga.store.base import EventLog, check_saga_id

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
    sagas: Iterable[Saga] = (),
    new_id: str | None = None,
    reason: str = "",
    by: str | None = None,
) -> str:
    """Start a fork of saga ``saga_id`` that runs from ``from_step`` on; returns its id.

    The fork has the original's name, version and (unless ``input`` is given)
    input; its deadline, if the original has one, is as far from its start as
    the original's was. Sealed values it copies are sealed again under its own
    id with the store's keys. A new ``input`` needs the saga's definition
    among ``sagas``: it is validated by the input model and its secret fields
    sealed. With the definition, the fork is checked as a worker would drive
    it (its steps, its input and copied results) before it is written.

    Raises :class:`~saga.errors.InvalidOperation` if the original never
    reached ``from_step``, :class:`~saga.errors.SagaIdConflict` if ``new_id``
    is taken, :class:`~saga.errors.InvalidInput` for an input without its
    definition, or one the definition refuses, and
    :class:`~saga.secrets.keys.SecretError` when sealed values cannot be opened
    (no key, or the wrong one); in each case nothing is written.
    """
    text, who = check_reason(reason), check_by(by)
    if not isinstance(from_step, str) or not from_step:
        raise InvalidInput("the step to fork from must be a non-empty string")
    fork_id = check_saga_id(new_id) if new_id is not None else uuid.uuid4().hex
    original = load_state(store, saga_id)
    copied = _copied(original, from_step)
    if fork_id == saga_id:
        raise SagaIdConflict(f"a fork needs a new id, not the original's {saga_id!r}")
    given = list(sagas)
    saga = find_definition(original, given)
    keys = store.key_ring
    if input is SAME_INPUT:
        value = resealed(original.input, keys, source=input_context(saga_id),
                         target=input_context(fork_id))
    else:
        saga = definition_for(original, given, "a fork's input")
        value = stored_input(saga, input, fork_id, keys)  # validated, secret fields sealed
    now = clock.now()
    deadline = None
    if original.deadline is not None and original.started_at is not None:
        deadline = now + (original.deadline - original.started_at)
    events: list[ev.Event] = [ev.SagaStarted(
        name=original.name, version=original.version, input=value, deadline=deadline, at=now,
        forked_from={"id": saga_id, "step": from_step},
    )]
    events += [ev.StepCopied(
        step=name, copied_from=saga_id, at=now,
        result=resealed(original.steps[name].result, keys, source=result_context(saga_id, name),
                        target=result_context(fork_id, name)),
    ) for name in copied]
    if saga is not None:
        _check_runnable(saga, fold(fork_id, events), store)
    if not store.create(fork_id, events, name=original.name, version=original.version,
                        status=SagaStatus.RUNNING, wake_at=now, now=now):
        raise SagaIdConflict(f"saga id {fork_id!r} is already used; choose another for the fork")
    _name_the_fork(store, clock, saga_id, ev.SagaForked(
        fork=fork_id, step=from_step, by=who, reason=text, at=now))
    return fork_id


def _copied(original: SagaState, from_step: str) -> list[str]:
    """The steps a fork of ``original`` from ``from_step`` copies: those before it, all done."""
    order = list(original.steps)  # the order the log first names them: the order they ran
    if from_step not in order:
        reached = ", ".join(repr(s) for s in order) or "none"
        raise InvalidOperation(
            f"saga {original.saga_id} never reached step {from_step!r} (steps it reached: "
            f"{reached}); a fork can run only from one of them"
        )
    copied = order[:order.index(from_step)]
    for name in copied:  # a later step ran, so these succeeded (or were skipped or copied)
        if original.steps[name].forward.phase is not Phase.DONE:
            raise InvalidOperation(f"saga {original.saga_id}: step {name!r} before {from_step!r} "
                                   "did not succeed; fork from it instead")
    return copied


def _check_runnable(saga: Saga, fork: SagaState, store: EventLog) -> None:
    """Refuse a fork that a worker with ``saga`` could not drive."""
    check_fits(fork, saga)
    problem = unreadable(saga, fork, store.key_ring)
    if problem is not None:
        raise InvalidInput(f"the fork cannot run: {problem[1]}")


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

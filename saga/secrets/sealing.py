"""A saga's secret fields on their way into the log and back out to its steps.

The coordinator calls these at the few places a saga's values cross the log:

- :func:`stored_input` when a saga starts: its input as stored, each secret
  field sealed under ``"<saga id>/input"``;
- :func:`sealed_target` when an attempt is prepared: a step whose output
  model has secret fields returns its output sealed under ``"<saga id>/<step>"``;
- :func:`step_input`, :func:`step_results` and :func:`step_result` when an
  attempt's context is built: the real values, opened with the store's keys,
  so a step run after a crash and restart gets the secret, not ``**********``;
- :func:`saga.secrets.masking.attempt_mask` when an attempt is prepared: the
  mask of the secrets it is given, through which every text it leaves passes
  on its way out (its own module: it hides text, and seals nothing);
- :func:`redacted` wherever people read the log (``show``, ``history``):
  every sealed value becomes ``**********``;
- :func:`skipped_result` and :func:`resealed` when an operator writes values:
  a result given to ``skip`` is checked against the step's output model and
  sealed, and what a fork copies is sealed again under the fork's id;
  :func:`unreadable` says why a worker could not give a saga's steps its values.

Models without secret fields take the old paths unchanged (one cached check).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from saga.codec import InvalidValue, to_json_value
from saga.definition import Compensation, Saga, Step, StepContext
from saga.errors import InvalidInput
from saga.secrets.keys import (
    ENV_VAR,
    EncryptionKeyMissing,
    KeyRing,
    SecretError,
    dump_secret_json,
    has_secret_fields,
    is_envelope,
    load_secret_json,
    open_json,
    redact_json,
    reseal_json,
)
from saga.state import SagaState
from saga.store.base import StoredEvent

__all__ = [
    "input_context",
    "redact_event",
    "redacted",
    "require_keys",
    "resealed",
    "result_context",
    "saga_secrets",
    "same_input",
    "sealed_target",
    "skipped_result",
    "step_input",
    "step_result",
    "step_results",
    "stored_input",
    "unreadable",
]

_MAY_HOLD_SECRETS = frozenset({"SagaStarted", "StepSucceeded", "StepSkipped", "StepCopied"})
"""The event types whose data carry a saga's input or a step's output."""


def input_context(saga_id: str) -> str:
    """What a saga's sealed input is bound to."""
    return f"{saga_id}/input"


def result_context(saga_id: str, step: str) -> str:
    """What a step's sealed output is bound to."""
    return f"{saga_id}/{step}"


def _secret(model: type[BaseModel] | None) -> bool:
    return model is not None and has_secret_fields(model)


def saga_secrets(saga: Saga) -> list[str]:
    """Where ``saga`` keeps secret fields: ``"input"`` and the names of steps whose output has them."""
    where = ["input"] if _secret(saga.input_model) else []
    return where + [s.name for s in saga.steps if _secret(s.output_model)]


def require_keys(saga: Saga, keys: KeyRing | None) -> None:
    """Raise :class:`~saga.secrets.keys.EncryptionKeyMissing` if ``saga`` has secret fields and
    ``keys`` is ``None``."""
    if keys is None and (where := saga_secrets(saga)):
        raise EncryptionKeyMissing(
            f"saga {saga.name!r} has secret fields ({', '.join(where)}) and no encryption key "
            f"is set: set {ENV_VAR} (`saga key generate` prints a new key), pass "
            f"EventStore(..., encryption_key=...) or --encryption-key"
        )


def stored_input(saga: Saga, value: Any, saga_id: str, keys: KeyRing | None) -> Any:
    """A new saga's input as the log stores it: validated, every secret field sealed.

    Raises :class:`~saga.secrets.keys.EncryptionKeyMissing` (when the saga has
    secret fields anywhere and no key is set) or :class:`~saga.InvalidInput`,
    before anything is written.
    """
    require_keys(saga, keys)
    stored = saga.validate_input(value)  # the saga's own checks and messages
    model = saga.input_model
    if model is None or not _secret(model):
        return stored
    instance = value if isinstance(value, model) else model.model_validate(value)
    return dump_secret_json(model, instance, keys=keys, context=input_context(saga_id))


def same_input(stored: Any, new: Any, saga_id: str, keys: KeyRing | None) -> bool:
    """Whether two stored inputs of saga ``saga_id`` hold the same values (sealed values are
    compared opened: each sealing draws a fresh nonce)."""
    if stored == new:
        return True
    context = input_context(saga_id)
    return bool(open_json(stored, keys, context) == open_json(new, keys, context))


# -- values an operator writes ---------------------------------------------------------------


def skipped_result(saga: Saga, step: str, value: Any, saga_id: str, keys: KeyRing | None) -> Any:
    """The result an operator gives ``step`` (``saga skip``) as the log stores it: checked
    against the step's output model, every secret field sealed under ``"<saga id>/<step>"``.

    ``None`` stands for no result, as a step may return. Raises
    :class:`~saga.InvalidInput` (naming where the value does not fit, never
    the value) or :class:`~saga.secrets.keys.EncryptionKeyMissing`, before
    anything is written.
    """
    target = saga.get(step)
    if target is None:
        raise InvalidInput(f"version {saga.version} of {saga.name!r} has no step {step!r}")
    model = target.output_model
    if value is not None and model is not None:
        if not isinstance(value, model):
            try:
                value = model.model_validate(value)
            except ValidationError as e:
                raise InvalidInput(f"the result for step {step!r} {_misfit(model, e)}") from None
        if _secret(model):
            return dump_secret_json(model, value, keys=keys, context=result_context(saga_id, step))
    try:
        return to_json_value(value)
    except InvalidValue as e:
        raise InvalidInput(f"the result for step {step!r} cannot be stored: {e}") from None


def resealed(value: Any, keys: KeyRing | None, *, source: str, target: str) -> Any:
    """``value``, stored under ``source`` (:func:`input_context`, :func:`result_context`), as it
    is stored under ``target``: every sealed value opened and sealed again, so that the saga
    it is copied to (a fork) can open it. Values without secrets are returned as they are.

    Raises :class:`~saga.secrets.keys.EncryptionKeyMissing` when ``value`` holds
    sealed values and ``keys`` is ``None``, and what opening raises with the
    wrong keys, before anything is written.
    """
    if not _holds_envelope(value):
        return value
    if keys is None:
        raise EncryptionKeyMissing(
            f"the values at {source} are sealed, and copying them to {target} seals them again "
            f"under that id, which needs the key: set {ENV_VAR}, pass "
            f"EventStore(..., encryption_key=...) or --encryption-key"
        )
    return reseal_json(value, keys, source, target)


def unreadable(saga: Saga, state: SagaState, keys: KeyRing | None) -> tuple[str, str] | None:
    """Why a worker could not give the steps of ``state`` their values: ``("input", why)`` when
    the input does not fit ``saga``'s input model or does not open, ``(step, why)`` for such a
    result, ``None`` when every value is readable.

    Values sealed while ``keys`` is ``None`` are not checked (that takes the
    key); every step of ``state`` must be one of ``saga``'s
    (:func:`saga._engine.decide.check_fits`).
    """
    context = input_context(state.saga_id)
    values = [("input", saga.input_model, state.input, context)] + [
        (name, saga[name].output_model, value, result_context(state.saga_id, name))
        for name, value in state.results.items()]
    for where, model, value, context in values:
        what = "its input" if where == "input" else f"the result of step {where!r}"
        try:
            _parsed(model, value, keys, context)
        except EncryptionKeyMissing:
            continue
        except SecretError as e:
            return where, f"saga {state.saga_id}: {what} does not open: {e}"
        except ValidationError as e:
            assert model is not None
            return where, f"saga {state.saga_id}: {what} {_misfit(model, e)}"
    return None


def _misfit(model: type[BaseModel], error: ValidationError) -> str:
    """Where a value does not fit ``model``, without the value (it may be a secret)."""
    where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
                      for e in error.errors())
    return f"does not fit {model.__name__}: {where}"


# -- opening values for a step -------------------------------------------------------------------


def _parsed(model: type[BaseModel] | None, value: Any, keys: KeyRing | None, context: str) -> Any:
    if model is None or value is None:
        return value
    if _secret(model):
        return load_secret_json(model, value, keys=keys, context=context)
    return model.model_validate(value)


def step_input(saga: Saga, state: SagaState, keys: KeyRing | None) -> Any:
    """The saga's input as its steps see it: an ``input_model`` instance with the real secrets."""
    return _parsed(saga.input_model, state.input, keys, input_context(state.saga_id))


def step_results(saga: Saga, state: SagaState, keys: KeyRing | None) -> dict[str, Any]:
    """The outputs of the steps that succeeded, each as its output model with the real secrets."""
    return {name: _parsed(saga[name].output_model, value, keys, result_context(state.saga_id, name))
            for name, value in state.results.items()}


def step_result(saga: Saga, state: SagaState, step: str, keys: KeyRing | None) -> Any:
    """One step's output (``None`` if it has none), with the real secrets."""
    return _parsed(saga[step].output_model, state.steps[step].result, keys,
                   result_context(state.saga_id, step))


def sealed_target(target: Step | Compensation, ctx: StepContext, keys: KeyRing | None
                  ) -> Step | Compensation:
    """``target`` as the attempt runs it: a step whose output model has secret fields returns
    its output with them sealed under ``"<saga id>/<step>"`` (any other target is returned as it
    is). What the attempt leaves in the log is masked separately
    (:class:`saga.secrets.masking.Mask`)."""
    output = target.output_model if isinstance(target, Step) else None
    if not _secret(output):
        return target
    assert output is not None
    context = result_context(ctx.saga_id, target.name)
    fn = target.fn

    def finish(value: Any) -> Any:
        return None if value is None else dump_secret_json(output, value, keys=keys, context=context)

    if target.is_async:
        async def sealing_async(c: StepContext) -> Any:
            return finish(await fn(c))

        wrapped: Any = sealing_async
    else:
        def sealing(c: StepContext) -> Any:
            return finish(fn(c))

        wrapped = sealing
    sealed = copy.copy(target)
    sealed.fn = wrapped
    return sealed


# -- what people see -------------------------------------------------------------------------


def redact_event(stored: StoredEvent) -> StoredEvent:
    """``stored`` with every sealed value shown as ``**********``."""
    if stored.type not in _MAY_HOLD_SECRETS or not _holds_envelope(stored.data):
        return stored
    return dataclasses.replace(stored, data=redact_json(stored.data), _event=None)


def redacted(events: Iterable[StoredEvent]) -> Iterator[StoredEvent]:
    """Stored events as people may read them: every sealed value is ``**********``."""
    for stored in events:
        yield redact_event(stored)


def _holds_envelope(value: Any) -> bool:
    if is_envelope(value):
        return True
    if isinstance(value, Mapping):
        return any(_holds_envelope(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_envelope(v) for v in value)
    return False

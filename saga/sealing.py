"""A saga's secret fields on their way into the log and back out to its steps.

The coordinator calls these at the few places a saga's values cross the log:

- :func:`stored_input` when a saga starts: its input as stored, each secret
  field sealed under ``"<saga id>/input"``;
- :func:`sealed_target` when an attempt is prepared: a step whose output
  model has secret fields returns its output sealed under ``"<saga id>/<step>"``;
- :func:`step_input`, :func:`step_results` and :func:`step_result` when an
  attempt's context is built: the real values, opened with the store's keys,
  so a step run after a crash and restart gets the secret, not ``**********``;
- :func:`redacted` wherever people read the log (``show``, ``history``):
  every sealed value becomes ``**********``.

Models without secret fields take the old paths unchanged (one cached check).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr

from .definition import Compensation, Saga, Step, StepContext
from .secrets import (
    ENV_VAR,
    MASK,
    EncryptionKeyMissing,
    KeyRing,
    dump_secret_json,
    has_secret_fields,
    is_envelope,
    load_secret_json,
    open_json,
    redact_json,
)
from .state import SagaState
from .store.base import StoredEvent

__all__ = [
    "input_context",
    "redact_event",
    "redacted",
    "require_keys",
    "result_context",
    "saga_secrets",
    "same_input",
    "sealed_target",
    "step_input",
    "step_result",
    "step_results",
    "stored_input",
]

_MAY_HOLD_SECRETS = frozenset({"SagaStarted", "StepSucceeded"})
"""The event types whose data carry a saga's input or a step's output."""


def input_context(saga_id: str) -> str:
    """What a saga's sealed input is bound to."""
    return f"{saga_id}/input"


def result_context(saga_id: str, step: str) -> str:
    """What a step's sealed output is bound to."""
    return f"{saga_id}/{step}"


@functools.cache
def _secret(model: type[BaseModel] | None) -> bool:
    return model is not None and has_secret_fields(model)


def saga_secrets(saga: Saga) -> list[str]:
    """Where ``saga`` keeps secret fields: ``"input"`` and the names of steps whose output has them."""
    where = ["input"] if _secret(saga.input_model) else []
    return where + [s.name for s in saga.steps if _secret(s.output_model)]


def require_keys(saga: Saga, keys: KeyRing | None) -> None:
    """Raise :class:`~saga.secrets.EncryptionKeyMissing` if ``saga`` has secret fields and
    ``keys`` is ``None``."""
    if keys is None and (where := saga_secrets(saga)):
        raise EncryptionKeyMissing(
            f"saga {saga.name!r} has secret fields ({', '.join(where)}) and no encryption key "
            f"is set: set {ENV_VAR} (`saga key generate` prints a new key), pass "
            f"EventStore(..., encryption_key=...) or --encryption-key"
        )


def stored_input(saga: Saga, value: Any, saga_id: str, keys: KeyRing | None) -> Any:
    """A new saga's input as the log stores it: validated, every secret field sealed.

    Raises :class:`~saga.secrets.EncryptionKeyMissing` (when the saga has
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
    """``target`` as the attempt runs it, when secrets are involved (else ``target`` itself).

    A step whose output model has secret fields returns its output with them
    sealed under ``"<saga id>/<step>"``. An exception raised by a target that
    was given secrets has every secret value in its arguments replaced by
    ``**********``, so the message the log records does not hold them (an
    exception whose ``str`` does not come from its arguments is left as it is).
    """
    output = target.output_model if isinstance(target, Step) else None
    seal_output = _secret(output)
    hidden = _given_secrets(ctx)
    if not seal_output and not hidden:
        return target
    context = result_context(ctx.saga_id, target.name)
    fn = target.fn

    def finish(value: Any) -> Any:
        if not seal_output or value is None:
            return value
        assert output is not None
        return dump_secret_json(output, value, keys=keys, context=context)

    if target.is_async:
        async def sealing_async(c: StepContext) -> Any:
            try:
                value = await fn(c)
            except Exception as e:
                _scrub(e, hidden)
                raise
            return finish(value)

        wrapped: Any = sealing_async
    else:
        def sealing(c: StepContext) -> Any:
            try:
                value = fn(c)
            except Exception as e:
                _scrub(e, hidden)
                raise
            return finish(value)

        wrapped = sealing
    sealed = copy.copy(target)
    sealed.fn = wrapped
    return sealed


_SHORTEST_MASKED = 3
"""Secrets shorter than this are not looked for in messages (they would mask ordinary text)."""


def _given_secrets(ctx: StepContext) -> list[str]:
    """The plain text of every secret an attempt is given (longest first)."""
    found: set[str] = set()
    for value in (ctx.input, ctx.result, *ctx.results.values()):
        if isinstance(value, BaseModel) and _secret(type(value)):
            _collect(value.model_dump(mode="python"), found)
    return sorted((s for s in found if len(s) >= _SHORTEST_MASKED), key=len, reverse=True)


def _collect(value: Any, found: set[str]) -> None:
    if isinstance(value, SecretStr):
        found.add(value.get_secret_value())
    elif isinstance(value, SecretBytes):
        found.add(value.get_secret_value().decode("utf-8", "replace"))
    elif isinstance(value, Mapping):
        for v in value.values():
            _collect(v, found)
    elif isinstance(value, list | tuple):
        for v in value:
            _collect(v, found)


def _scrub(error: BaseException, hidden: list[str]) -> None:
    def clean(arg: Any) -> Any:
        if not isinstance(arg, str):
            return arg
        for secret in hidden:
            arg = arg.replace(secret, MASK)
        return arg

    error.args = tuple(clean(a) for a in error.args)


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

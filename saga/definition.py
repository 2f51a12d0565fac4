"""Saga definitions: steps, compensations and their policies, validated when built."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, KeysView, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel

from saga.calls import CallAdapter, CallLog
from saga.clock import Clock, SystemClock
from saga.codec import InvalidValue, to_json_value
from saga.errors import DefinitionError, InvalidInput, PolicyError
from saga.policies import Retry, seconds

__all__ = [
    "DEFAULT_COMPENSATION_RETRY",
    "DEFAULT_STEP_RETRY",
    "Compensation",
    "Saga",
    "Step",
    "StepContext",
]

DEFAULT_STEP_RETRY = Retry.exponential(initial=1.0, maximum=60.0, attempts=3, jitter=True)
"""Three attempts, about one and two seconds apart (with jitter)."""

DEFAULT_COMPENSATION_RETRY = Retry.exponential(initial=1.0, maximum=60.0, attempts=10, jitter=True)
"""Ten attempts over about five minutes, then the saga fails and waits for an operator."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")

R = TypeVar("R")
StepFunction = Callable[["StepContext"], Any]
Request = Mapping[str, Any] | Callable[["StepContext"], Mapping[str, Any]] | None
"""The keywords an adapter is called with: fixed, or built from the attempt's context."""

_SYSTEM_CLOCK = SystemClock()


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a step or compensation is told about the attempt it runs in.

    ``idempotency_key`` is the same for every attempt of a step, across
    restarts, and differs for its compensation: pass it to the service so the
    effect happens once however often the step runs. ``result`` is the step's
    own output, set in its compensation; ``deadline`` is the saga's absolute
    deadline and ``attempt_deadline`` the time this attempt is abandoned.
    ``calls`` collects what the attempt's adapters did (a fresh log per
    attempt) and ``clock`` is the coordinator's: adapters time their calls
    and sleep on it, so a virtual clock makes simulated latency free.
    """

    saga_id: str
    saga_name: str
    step: str
    attempt: int
    idempotency_key: str
    input: Any
    results: Mapping[str, Any]
    result: Any = None
    deadline: datetime | None = None
    attempt_deadline: datetime | None = None
    compensating: bool = False
    calls: CallLog = field(default_factory=CallLog, compare=False, repr=False)
    clock: Clock = field(default=_SYSTEM_CLOCK, compare=False, repr=False)


class _Action(Generic[R]):
    """A user function with its retry policy and timeout."""

    def __init__(
        self,
        fn: Callable[[StepContext], R],
        *,
        name: str,
        retry: Retry,
        timeout: float | timedelta | None,
    ) -> None:
        if not callable(fn):
            raise DefinitionError(f"{name}: a step must be a function, not {fn!r}")
        if not isinstance(retry, Retry):
            raise PolicyError(
                f"{name}: retry must be a saga.Retry (Retry.fixed, Retry.exponential or "
                f"Retry.none), not {retry!r}"
            )
        self.fn = fn
        self.name = name
        self.retry = retry
        self.timeout = seconds(timeout, what=f"{name}: timeout")
        self.is_async = inspect.iscoroutinefunction(fn)
        self.adapter: CallAdapter | None = None
        """The adapter this action calls, when it was defined with :meth:`Saga.call`."""

    def __call__(self, ctx: StepContext) -> R:
        return self.fn(ctx)


class Compensation(_Action[Any]):
    """The function that undoes a step; must tolerate "nothing to undo"."""


class Step(_Action[Any]):
    """One step of a saga. Use as a decorator result: ``@step.compensate`` adds the undo."""

    def __init__(
        self,
        fn: StepFunction,
        *,
        name: str,
        retry: Retry,
        timeout: float | timedelta | None,
    ) -> None:
        super().__init__(fn, name=name, retry=retry, timeout=timeout)
        self.compensation: Compensation | None = None
        self.output_model = _output_model(fn)

    @overload
    def compensate(self, fn: StepFunction, /) -> Compensation: ...

    @overload
    def compensate(
        self,
        fn: None = None,
        /,
        *,
        retry: Retry = ...,
        timeout: float | timedelta | None = ...,
    ) -> Callable[[StepFunction], Compensation]: ...

    def compensate(
        self,
        fn: StepFunction | None = None,
        /,
        *,
        retry: Retry = DEFAULT_COMPENSATION_RETRY,
        timeout: float | timedelta | None = None,
    ) -> Compensation | Callable[[StepFunction], Compensation]:
        """Register the compensation of this step (usable bare or with options)."""

        def register(f: StepFunction) -> Compensation:
            if self.compensation is not None:
                raise DefinitionError(f"step {self.name!r} already has a compensation")
            self.compensation = Compensation(
                f, name=f"{self.name} (compensation)", retry=retry, timeout=timeout
            )
            return self.compensation

        return register if fn is None else register(fn)

    def __repr__(self) -> str:
        return f"<Step {self.name}>"


class Saga:
    """A named, versioned business transaction: an ordered list of steps.

    ``input_model`` (a pydantic model class) validates the input when a saga
    is started; ``deadline`` (seconds or ``timedelta``) is absolute from the
    start: once it passes no forward attempt starts and the saga compensates.
    """

    def __init__(
        self,
        name: str,
        *,
        version: int = 1,
        input_model: type[BaseModel] | None = None,
        deadline: float | timedelta | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise DefinitionError(
                f"saga name must be 1-128 letters, digits, '_', '-' or '.', "
                f"starting with a letter or '_'; got {name!r}"
            )
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise DefinitionError(f"saga {name!r}: version must be a whole number >= 1, got {version!r}")
        if input_model is not None and not (
            isinstance(input_model, type) and issubclass(input_model, BaseModel)
        ):
            raise DefinitionError(
                f"saga {name!r}: input_model must be a pydantic model class, got {input_model!r}"
            )
        self.name = name
        self.version = version
        self.input_model = input_model
        self.deadline = seconds(deadline, what=f"saga {name!r}: deadline")
        self.steps: list[Step] = []
        self._by_name: dict[str, Step] = {}

    @overload
    def step(self, fn: StepFunction, /) -> Step: ...

    @overload
    def step(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = ...,
        retry: Retry = ...,
        timeout: float | timedelta | None = ...,
    ) -> Callable[[StepFunction], Step]: ...

    def step(
        self,
        fn: StepFunction | None = None,
        /,
        *,
        name: str | None = None,
        retry: Retry = DEFAULT_STEP_RETRY,
        timeout: float | timedelta | None = None,
    ) -> Step | Callable[[StepFunction], Step]:
        """Add a step (usable bare, ``@saga.step``, or with options). Steps run in order."""

        def register(f: StepFunction) -> Step:
            step_name = name if name is not None else getattr(f, "__name__", None)
            return self._add(Step(f, name=self._check_name(step_name), retry=retry, timeout=timeout))

        return register if fn is None else register(fn)

    def _check_name(self, step_name: object) -> str:
        if not isinstance(step_name, str) or not _NAME.match(step_name):
            raise DefinitionError(f"saga {self.name!r}: invalid step name {step_name!r}")
        if step_name in self._by_name:
            raise DefinitionError(f"saga {self.name!r}: step name {step_name!r} is used twice")
        return step_name

    def _add(self, s: Step) -> Step:
        self.steps.append(s)
        self._by_name[s.name] = s
        return s

    def call(
        self,
        name: str,
        adapter: CallAdapter,
        *,
        request: Request = None,
        compensate: CallAdapter | None = None,
        compensate_request: Request = None,
        retry: Retry = DEFAULT_STEP_RETRY,
        compensate_retry: Retry = DEFAULT_COMPENSATION_RETRY,
        timeout: float | timedelta | None = None,
        compensate_timeout: float | timedelta | None = None,
    ) -> Step:
        """Add a step that is one call of ``adapter``, undone by one call of ``compensate``.

        ``request`` is the keywords of the call (``json=``, ``params=``,
        ``path=`` for :class:`~saga.adapters.Http`; ``work=`` for
        :class:`~saga.adapters.SqlParticipant`): a mapping, or a function of
        the attempt's :class:`StepContext` that returns one (to send
        ``ctx.input`` or an earlier step's result); none by default.
        ``compensate_request`` is the same for the compensation, where
        ``ctx.result`` is the step's answer. The step's result is the
        adapter's answer. The adapters are :attr:`Step.adapter` and
        ``step.compensation.adapter``, for tools that inspect a saga.
        """
        self._check_name(name)
        what = f"saga {self.name!r}: step {name!r}"
        fn = _calling(adapter, request, what=what)
        if compensate is None and compensate_request is not None:
            raise DefinitionError(f"{what}: compensate_request without compensate")
        undo = None if compensate is None else _calling(
            compensate, compensate_request, what=f"{what}: compensate"
        )
        step = Step(fn, name=name, retry=retry, timeout=timeout)
        if undo is not None:
            comp = step.compensate(retry=compensate_retry, timeout=compensate_timeout)(undo)
            comp.adapter = compensate
        step.adapter = adapter
        return self._add(step)

    def __getitem__(self, step_name: str) -> Step:
        return self._by_name[step_name]

    def get(self, step_name: str) -> Step | None:
        """The step called ``step_name``, or ``None``."""
        return self._by_name.get(step_name)

    def __contains__(self, step_name: object) -> bool:
        return step_name in self._by_name

    @property
    def step_names(self) -> KeysView[str]:
        """The names of the steps (a live, set-like view)."""
        return self._by_name.keys()

    def validate_input(self, value: Any) -> Any:
        """The input as stored in the log (JSON), validated by ``input_model`` if set."""
        try:
            if self.input_model is not None and not isinstance(value, self.input_model):
                value = self.input_model.model_validate(value)
            return to_json_value(value)
        except InvalidValue as e:
            raise InvalidInput(f"saga {self.name!r}: input is not JSON: {e}") from e
        except ValueError as e:  # pydantic.ValidationError is a ValueError
            raise InvalidInput(f"saga {self.name!r}: invalid input: {_one_line(e)}") from e

    def __repr__(self) -> str:
        return f"<Saga {self.name} v{self.version}: {', '.join(s.name for s in self.steps)}>"


def _calling(adapter: Any, request: Any, *, what: str) -> StepFunction:
    """A step function that calls ``adapter`` with ``request``'s keywords."""
    if not isinstance(adapter, CallAdapter):
        raise DefinitionError(
            f"{what}: the adapter must be callable as adapter(ctx, **request) and "
            f"await adapter.acall(ctx, **request) (e.g. saga.adapters.Http), not {adapter!r}"
        )
    if request is None:
        request = {}
    if isinstance(request, Mapping):
        if not all(isinstance(k, str) for k in request):
            raise DefinitionError(f"{what}: request keys must be keyword names, got {request!r}")
        fixed = dict(request)

        def call(ctx: StepContext) -> Any:
            return adapter(ctx, **fixed)

    elif callable(request):
        build = request

        def call(ctx: StepContext) -> Any:
            made = build(ctx)
            if not isinstance(made, Mapping):
                raise DefinitionError(f"{what}: request returned {made!r}, not a mapping of keywords")
            return adapter(ctx, **made)

    else:
        raise DefinitionError(
            f"{what}: request must be a mapping of keywords or a function of the context, "
            f"not {request!r}"
        )
    call.__name__ = call.__qualname__ = f"call {adapter.target}"
    return call


def _one_line(error: Exception) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        parts = []
        for item in errors():
            loc = ".".join(str(p) for p in item.get("loc", ())) or "input"
            parts.append(f"{loc}: {item.get('msg')}")
        return "; ".join(parts)
    return str(error).replace("\n", " ")


def _output_model(fn: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model a step's return annotation names, if any."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return None
    ret = hints.get("return")
    if isinstance(ret, type) and issubclass(ret, BaseModel):
        return ret
    return None

"""OpenTelemetry: spans for drives, attempts and HTTP calls, the starter's trace context, metrics.

Uses ``opentelemetry-api`` only (``pip install 'saga-coordinator[otel]'``); the application
configures an SDK (or not). Without the API, or with no SDK, every hook returns a shared no-op.

Spans (names and attributes are a contract):

- ``saga.run <name>``: one drive of a saga (load, decide, run attempts, append);
  attributes ``saga.id``, ``saga.name``, ``saga.version``. It is a child of the
  caller's current span, and *links* to the span that was current when the saga
  was started (stored in :class:`~saga.events.SagaStarted` as W3C trace context),
  because the drive may happen much later, in another process, many times over.
- ``saga.step <step>`` (kind INTERNAL): one attempt, a child of its drive; adds ``saga.step.name``,
  ``saga.step.attempt``, ``saga.step.compensation``, and on failure ``error.type``, status ERROR.
- ``GET``, ``POST``, ...: an :class:`~saga.adapters.Http` call (kind CLIENT), a child of its
  attempt, with OpenTelemetry's HTTP client attributes; the request carries its ``traceparent``.

Text that may quote a secret the attempt was given (``url.full``, status messages, the
``exception`` events' message and stack trace) passes through the attempt's mask (``ctx.calls.mask``).

Metrics: ``saga.step.attempts`` (counter) and ``saga.step.duration`` (histogram, seconds) by
``saga.name``, ``saga.step.name``, ``saga.step.compensation`` and ``saga.step.outcome``
(``succeeded``, ``failed``, ``timed_out``, ``lost``: the outcome the log records, by
:func:`saga.attempts.outcome_of`; an attempt its worker stopped in is ``lost``, as the next
worker records it); ``saga.sagas`` (observable gauge) by ``saga.name`` and ``saga.status``,
read from the index of the stores of this process's coordinators, when metrics are collected.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from saga.attempts import ended_with
from saga.definition import StepContext
from saga.state import ErrorInfo

if TYPE_CHECKING:
    from saga.store.base import EventLog

try:
    from opentelemetry import context as _context
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.metrics import _internal as _metrics_globals
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _W3C: TraceContextTextMapPropagator | None = TraceContextTextMapPropagator()
except ImportError:  # the [otel] extra is not installed: every hook is a no-op
    _W3C = None

__all__ = ["attempt", "attempt_abandoned", "drive", "http_call", "started_context", "watch"]

log = logging.getLogger("saga")

_SCOPE: Final = "saga-coordinator"
# Seconds; OpenTelemetry's advice for HTTP durations, which fit step attempts too.
_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                   30.0, 60.0, 300.0)


# -- providers ---------------------------------------------------------------------------------

class _Instruments:
    """The tracer or the meter's instruments of one provider, made once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tracer: tuple[object, Any] = (None, None)
        self.meter: tuple[object, Any] = (None, None)


_made = _Instruments()


# Whether the environment names providers for the API to load on first use.
_FROM_ENV: Final = {"OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER"} & set(os.environ)
_UNKNOWN: Final = object()


def _unset(module: Any, name: str) -> bool:
    """Whether no provider is set at all. The API's getters read the environment on every
    call (microseconds per hook); its globals say the same for a tenth of that."""
    return not _FROM_ENV and getattr(module, name, _UNKNOWN) is None


def _tracer() -> Any:
    """The tracer of the configured provider, or ``None`` when none is (no API, no SDK)."""
    if _W3C is None or _unset(_trace, "_TRACER_PROVIDER"):
        return None
    provider = _trace.get_tracer_provider()
    cached, tracer = _made.tracer
    if provider is cached:
        return tracer
    if isinstance(provider, _trace.ProxyTracerProvider | _trace.NoOpTracerProvider):
        return None
    with _made.lock:
        tracer = provider.get_tracer(_SCOPE)
        _made.tracer = (provider, tracer)
    return tracer


class _Meters:
    def __init__(self, meter: Any) -> None:
        self.attempts = meter.create_counter(
            "saga.step.attempts", unit="{attempt}", description="Attempts of saga steps, by outcome.")
        self.duration = meter.create_histogram(
            "saga.step.duration", unit="s", description="How long attempts of saga steps ran.",
            explicit_bucket_boundaries_advisory=_BUCKETS)
        meter.create_observable_gauge(
            "saga.sagas", callbacks=[_observe_sagas], unit="{saga}",
            description="Sagas in the stores of this process's coordinators, by name and status.")


def _meters() -> _Meters | None:
    """The instruments of the configured meter provider, or ``None`` when none is."""
    if _W3C is None or _unset(_metrics_globals, "_METER_PROVIDER"):
        return None
    provider = _metrics.get_meter_provider()
    cached, meters = _made.meter
    if provider is cached:
        return meters  # type: ignore[no-any-return]
    if isinstance(provider, _metrics.NoOpMeterProvider) or type(provider).__name__ == "_ProxyMeterProvider":
        return None
    with _made.lock:
        cached, meters = _made.meter
        if provider is not cached:
            meters = _Meters(provider.get_meter(_SCOPE))
            _made.meter = (provider, meters)
    return meters  # type: ignore[no-any-return]


# -- the starter's context ---------------------------------------------------------------------

def started_context() -> dict[str, str] | None:
    """The current span's W3C trace context (``traceparent``, ``tracestate``), or ``None``
    when there is no valid current span: what :class:`~saga.events.SagaStarted` stores."""
    if _W3C is None or not _trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier or None


def _link(carrier: Mapping[str, str] | None) -> list[Any]:
    if not carrier or _W3C is None:
        return []
    try:
        span_context = _trace.get_current_span(_W3C.extract(dict(carrier))).get_span_context()
    except Exception:  # a context that cannot be read is no reason to stop a saga
        return []
    return [_trace.Link(span_context)] if span_context.is_valid else []


# -- drives and attempts -----------------------------------------------------------------------

_NOOP: Final = nullcontext()


def drive(saga_id: str, name: str, version: int, started: Mapping[str, str] | None
          ) -> AbstractContextManager[object]:
    """A ``saga.run <name>`` span around one drive, linked to the context ``started`` in."""
    tracer = _tracer()
    if tracer is None:
        return _NOOP
    return tracer.start_as_current_span(  # type: ignore[no-any-return]
        f"saga.run {name}", kind=_trace.SpanKind.INTERNAL, links=_link(started),
        attributes={"saga.id": saga_id, "saga.name": name, "saga.version": version},
    )


def _ignore(error: ErrorInfo | None) -> None:
    pass


_NOOP_ATTEMPT: Final = nullcontext(_ignore)

# The attempt span of each running attempt, by its context: a step may run on another
# thread (a time limit) or task (hedged calls), where the current span is not its own; and each
# attempt being recorded (one abandoned at its limit is ended by the thread that abandoned it).
_running: dict[int, tuple[StepContext, Any]] = {}
_open: dict[int, _Attempt] = {}
_open_lock = threading.Lock()


def attempt(version: int, ctx: StepContext) -> AbstractContextManager[Callable[[ErrorInfo | None], None]]:
    """A ``saga.step <step>`` span and the attempt metrics around one attempt of ``ctx``.

    The block calls the value it is given with the attempt's error (``None``:
    it succeeded) before it ends.
    """
    tracer, meters = _tracer(), _meters()
    if tracer is None and meters is None:
        return _NOOP_ATTEMPT
    return _Attempt(tracer, meters, version, ctx)


def attempt_abandoned(ctx: StepContext, error: ErrorInfo | None) -> None:
    """End the span and record the metrics of ``ctx``'s attempt, abandoned at its limit with
    ``error``, from another thread (its own may never leave its block; if it does, nothing)."""
    with _open_lock:
        found = _open.get(id(ctx))
    if found is not None:
        found.end(error, None)


class _Attempt:
    def __init__(self, tracer: Any, meters: _Meters | None, version: int, ctx: StepContext) -> None:
        self.tracer, self.meters, self.version, self.ctx = tracer, meters, version, ctx
        self.error: ErrorInfo | None = None
        self.span: Any = None
        self.token: Any = None
        self.began = 0.0
        self.ended = False

    def _record(self, error: ErrorInfo | None) -> None:
        self.error = error

    def __enter__(self) -> Callable[[ErrorInfo | None], None]:
        ctx = self.ctx
        if self.tracer is not None:
            self.span = self.tracer.start_span(
                f"saga.step {ctx.step}", kind=_trace.SpanKind.INTERNAL,
                attributes={
                    "saga.id": ctx.saga_id, "saga.name": ctx.saga_name, "saga.version": self.version,
                    "saga.step.name": ctx.step, "saga.step.attempt": ctx.attempt,
                    "saga.step.compensation": ctx.compensating,
                },
            )
            self.token = _context.attach(_trace.set_span_in_context(self.span))
            _running[id(ctx)] = (ctx, self.span)
        with _open_lock:
            _open[id(ctx)] = self
        self.began = time.perf_counter()
        return self._record

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.token is not None:
            _context.detach(self.token)  # on the thread that attached it
        self.end(self.error, exc)

    def end(self, error: ErrorInfo | None, exc: BaseException | None) -> None:
        """Record the attempt's metrics and end its span, once."""
        ctx = self.ctx
        with _open_lock:
            if self.ended:
                return
            self.ended = True
            _open.pop(id(ctx), None)
        elapsed = time.perf_counter() - self.began
        error_type = error.type if error is not None else None
        if exc is not None:  # the worker stops with no outcome recorded: the log will say lost
            error_type = _qualified(exc)
            error = ErrorInfo(error_type, "", lost=True)
        outcome = ended_with(error)  # the outcome the log records (saga.attempts.outcome_of)
        if self.meters is not None:
            attrs = {"saga.name": ctx.saga_name, "saga.step.name": ctx.step,
                     "saga.step.compensation": ctx.compensating, "saga.step.outcome": outcome}
            self.meters.attempts.add(1, attrs)
            self.meters.duration.record(elapsed, attrs)
        span = self.span
        if span is None:
            return
        _running.pop(id(ctx), None)
        if exc is not None:
            _record_exception(span, exc, ctx.calls.mask)
        if error_type is not None:
            span.set_attribute("error.type", error_type)
            message = error.message if error is not None and exc is None else ctx.calls.mask(str(exc))
            span.set_status(_trace.Status(_trace.StatusCode.ERROR, message))
        span.end()


def _record_exception(span: Any, exc: BaseException, mask: Callable[[str], str]) -> None:
    """The span's ``exception`` event for ``exc``, its message and stack trace through ``mask``."""
    span.record_exception(exc, attributes={
        "exception.message": mask(str(exc)),
        "exception.stacktrace": mask("".join(traceback.format_exception(exc))),
    })


def _qualified(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


# -- HTTP calls --------------------------------------------------------------------------------

class _NoHttpSpan:
    """What :func:`http_call` gives when no tracing is configured: does nothing."""

    def inject(self, headers: dict[str, str]) -> dict[str, str]:
        return headers

    def status(self, code: int) -> None:
        pass

    def __enter__(self) -> _NoHttpSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


_NO_HTTP: Final = _NoHttpSpan()


class _HttpSpan(_NoHttpSpan):
    def __init__(self, tracer: Any, ctx: StepContext, method: str, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        running = _running.get(id(ctx))
        parent = (_trace.set_span_in_context(running[1])
                  if running is not None and running[0] is ctx else None)
        self.mask = mask = ctx.calls.mask
        self.span = tracer.start_span(
            method, context=parent, kind=_trace.SpanKind.CLIENT,
            attributes={"http.request.method": method, "url.full": mask(_without_credentials(parts)),
                        "server.address": mask(parts.hostname or ""), "server.port": port},
        )
        self.code: int | None = None

    def inject(self, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` with this call's ``traceparent`` (and ``tracestate``)."""
        assert _W3C is not None
        _W3C.inject(headers, context=_trace.set_span_in_context(self.span))
        return headers

    def status(self, code: int) -> None:
        """Note the response's status code (400 and above is an error, by the conventions)."""
        self.code = code
        self.span.set_attribute("http.response.status_code", code)

    def __exit__(self, *exc: object) -> None:
        error = exc[1]
        error_type = (str(self.code) if self.code is not None and self.code >= 400
                      else _qualified(error) if isinstance(error, BaseException) else None)
        if isinstance(error, BaseException):
            _record_exception(self.span, error, self.mask)
        if error_type is not None:
            self.span.set_attribute("error.type", error_type)
            self.span.set_status(_trace.Status(_trace.StatusCode.ERROR))
        self.span.end()


def _without_credentials(parts: urllib.parse.SplitResult) -> str:
    if parts.username is None and parts.password is None:
        return urllib.parse.urlunsplit(parts)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"REDACTED:REDACTED@{host}"))


def http_call(ctx: StepContext, method: str, url: str) -> _NoHttpSpan:
    """A client span (named ``method``) around one HTTP request made in ``ctx``'s attempt.

    Use it as a context manager; pass the request's headers through its
    ``inject`` and the response's status code to its ``status``.
    """
    tracer = _tracer()
    if tracer is None:
        return _NO_HTTP
    return _HttpSpan(tracer, ctx, method, url)


# -- sagas by status ---------------------------------------------------------------------------

_stores: weakref.WeakSet[EventLog] = weakref.WeakSet()


def watch(store: EventLog) -> None:
    """Count ``store``'s sagas by name and status in the ``saga.sagas`` gauge (while it lives)."""
    _stores.add(store)


def _observe_sagas(options: CallbackOptions) -> Iterable[Observation]:
    counts: dict[tuple[str, str], int] = {}
    for store in list(_stores):
        try:
            for name, status, n in _counts(store):
                counts[name, status] = counts.get((name, status), 0) + n
        except Exception as e:  # a closed or unreachable store: skip it this time
            log.debug("saga.sagas: cannot count the sagas of %r: %s", store, e)
    return [Observation(n, {"saga.name": name, "saga.status": status})
            for (name, status), n in sorted(counts.items())]


def _counts(store: EventLog) -> Iterator[tuple[str, str, int]]:
    for (name, status), n in store.status_counts().items():
        yield name, status.value, n

"""OpenTelemetry: spans of drives, attempts and HTTP calls, the starter's context, metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.test.globals_test import reset_metrics_globals, reset_trace_globals
from opentelemetry.trace import SpanKind, StatusCode

from saga import Coordinator, EventStore, PermanentError, Retry, Saga, SagaStatus, StepContext, VirtualClock
from saga import events as ev
from saga.adapters import ConnectionFailed, Http
from saga.attempts import project

from .helpers import WorkerDied
from .loopback import Reply, Service

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Otel:
    """An SDK configured as the global providers, exporting to memory."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer: trace.Tracer

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name.startswith(prefix)]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                if m.name == metric for p in m.data.data_points]


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(meters)
    yield Otel(exporter, reader, provider.get_tracer("tests"))
    provider.shutdown()
    meters.shutdown()
    reset_trace_globals()
    reset_metrics_globals()


def trip(name: str = "trip", *, flaky: int = 0, refuse: bool = False) -> Saga:
    """``book`` then ``pay``: ``pay`` fails ``flaky`` times (retried), or for good with ``refuse``."""
    saga = Saga(name, version=3)
    failures = {"left": flaky}

    @saga.step
    def book(ctx: StepContext) -> str:
        return "booked"

    @book.compensate
    def unbook(ctx: StepContext) -> None:
        return None

    @saga.step(retry=Retry.exponential(initial=1.0, attempts=5))
    def pay(ctx: StepContext) -> str:
        if refuse:
            raise PermanentError("card refused")
        if failures["left"]:
            failures["left"] -= 1
            raise ValueError("gateway hiccup")
        return "paid"

    return saga


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    ctx = span.get_span_context()
    assert ctx is not None
    return ctx.span_id


def trace_id(span: ReadableSpan) -> int:
    ctx = span.get_span_context()
    assert ctx is not None
    return ctx.trace_id


# -- spans -------------------------------------------------------------------------------------

def test_a_drive_and_its_attempts_are_spans_under_the_caller(otel: Otel, sqlite_store: EventStore) -> None:
    with Coordinator(sqlite_store, [trip(flaky=1)], clock=VirtualClock()) as c, \
            otel.tracer.start_as_current_span("checkout") as checkout:
        saga_id = c.execute("trip", {"to": "Oslo"}).saga_id
    assert c.get(saga_id).status is SagaStatus.COMPLETED

    runs = otel.named("saga.run ")
    # The first drive runs book and pay; after the backoff, another runs pay again (a drive
    # in between may find pay not due yet and run nothing).
    assert len(runs) >= 2 and {s.name for s in runs} == {"saga.run trip"}
    steps = otel.named("saga.step ")
    assert [(s.name, s.attributes["saga.step.attempt"]) for s in steps if s.attributes] == [
        ("saga.step book", 1), ("saga.step pay", 1), ("saga.step pay", 2)]
    for run in runs:
        assert run.kind is SpanKind.INTERNAL
        assert parent_of(run) == checkout.get_span_context().span_id
        assert trace_id(run) == checkout.get_span_context().trace_id
        assert dict(run.attributes or {}) == {"saga.id": saga_id, "saga.name": "trip", "saga.version": 3}
    book, pay1, pay2 = steps
    assert parent_of(book) == parent_of(pay1) == span_id(runs[0])
    assert parent_of(pay2) == span_id(runs[-1])
    for s in steps:
        assert s.kind is SpanKind.INTERNAL
    assert dict(pay1.attributes or {}) == {
        "saga.id": saga_id, "saga.name": "trip", "saga.version": 3, "saga.step.name": "pay",
        "saga.step.attempt": 1, "saga.step.compensation": False, "error.type": "ValueError"}
    assert pay1.status.status_code is StatusCode.ERROR
    assert pay1.status.description == "gateway hiccup"
    assert "error.type" not in (pay2.attributes or {})
    assert pay2.status.status_code is StatusCode.UNSET


def test_compensation_attempts_say_so(otel: Otel, sqlite_store: EventStore) -> None:
    with Coordinator(sqlite_store, [trip(refuse=True)], clock=VirtualClock()) as c:
        saga_id = c.execute("trip").saga_id
    assert c.get(saga_id).status is SagaStatus.COMPENSATED
    steps = {(s.name, s.attributes["saga.step.compensation"]): s
             for s in otel.named("saga.step ") if s.attributes}
    assert set(steps) == {("saga.step book", False), ("saga.step pay", False), ("saga.step book", True)}
    assert steps["saga.step pay", False].attributes == {
        "saga.id": saga_id, "saga.name": "trip", "saga.version": 3, "saga.step.name": "pay",
        "saga.step.attempt": 1, "saga.step.compensation": False, "error.type": "PermanentError"}
    undo = steps["saga.step book", True]
    assert undo.status.status_code is StatusCode.UNSET
    # No caller span: the drive is a root, and the attempts its children.
    (run,) = otel.named("saga.run ")
    assert run.parent is None and not run.links
    assert parent_of(undo) == span_id(run)


def test_a_timed_out_attempt_is_an_error_of_its_own_type(otel: Otel, sqlite_store: EventStore) -> None:
    saga = Saga("slow")

    @saga.step(timeout=0.05, retry=Retry.none())
    def wait(ctx: StepContext) -> None:
        time.sleep(1.0)

    with Coordinator(sqlite_store, [saga], clock=VirtualClock()) as c:
        c.execute("slow")
    (step,) = otel.named("saga.step ")
    assert step.attributes is not None and step.attributes["error.type"] == "AttemptTimedOut"
    assert step.status.status_code is StatusCode.ERROR
    (point,) = [p for p in otel.points("saga.step.attempts") if p.attributes["saga.name"] == "slow"]
    assert point.attributes["saga.step.outcome"] == "timed_out"


# -- HTTP calls --------------------------------------------------------------------------------

def http_saga(url: str, *, timeout: float | None) -> Saga:
    saga = Saga("http")
    post = Http("POST", url)

    @saga.step(timeout=timeout, retry=Retry.none())
    def call(ctx: StepContext) -> Any:
        return post(ctx, json={"n": 1})

    return saga


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["inline", "on-a-thread"])
def test_an_http_call_is_a_client_span_under_its_attempt(
    otel: Otel, sqlite_store: EventStore, timeout: float | None
) -> None:
    service = Service("api")
    try:
        service.then(Reply(201, {"ok": True}))
        url = service.url.replace("http://", "http://alice:s3cret@") + "/bookings"
        with Coordinator(sqlite_store, [http_saga(url, timeout=timeout)]) as c:
            assert c.execute("http").status is SagaStatus.COMPLETED
        (seen,) = service.requests
    finally:
        service.close()
    (step,) = otel.named("saga.step ")
    (post,) = otel.named("POST")
    assert post.kind is SpanKind.CLIENT
    assert parent_of(post) == span_id(step) and trace_id(post) == trace_id(step)
    port = int(service.url.rsplit(":", 1)[1])
    assert dict(post.attributes or {}) == {
        "http.request.method": "POST",
        "url.full": f"http://REDACTED:REDACTED@127.0.0.1:{port}/bookings",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 201,
    }
    assert post.status.status_code is StatusCode.UNSET
    # The service is told the call's context.
    _, trace_hex, span_hex, _ = seen.headers["traceparent"].split("-")
    assert (int(trace_hex, 16), int(span_hex, 16)) == (trace_id(post), span_id(post))


def test_http_failures_carry_their_error_type(otel: Otel, sqlite_store: EventStore) -> None:
    service = Service("api")
    try:
        service.then(Reply(503, "down"))
        with Coordinator(sqlite_store, [http_saga(service.url + "/x", timeout=None)]) as c:
            c.execute("http")
    finally:
        service.close()
    (post,) = otel.named("POST")
    assert post.attributes is not None
    assert post.attributes["http.response.status_code"] == 503
    assert post.attributes["error.type"] == "503"
    assert post.status.status_code is StatusCode.ERROR
    # Nobody listens on a closed service's port.
    otel.spans.clear()
    with Coordinator(sqlite_store, [http_saga(service.url + "/x", timeout=None)]) as c:
        c.execute("http")
    (post,) = otel.named("POST")
    assert post.attributes is not None and "http.response.status_code" not in post.attributes
    assert post.attributes["error.type"] == f"{ConnectionFailed.__module__}.ConnectionFailed"
    assert post.status.status_code is StatusCode.ERROR


# -- the starter's context ---------------------------------------------------------------------

def test_start_stores_the_callers_trace_context(otel: Otel, sqlite_store: EventStore) -> None:
    with Coordinator(sqlite_store, [trip()]) as c:
        with otel.tracer.start_as_current_span("api request") as span:
            traced = c.start("trip")
        untraced = c.start("trip")
    first = sqlite_store.load(traced)[0]
    assert first.schema_version == 2
    ctx = span.get_span_context()
    traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
    assert first.data["trace"] == {"traceparent": traceparent}
    assert "trace" not in sqlite_store.load(untraced)[0].data


def test_a_version_1_saga_started_still_reads() -> None:
    data = {"at": "2026-01-01T00:00:00Z", "name": "trip", "version": 1, "input": None, "deadline": None}
    event = ev.parse("SagaStarted", data, 1)
    assert isinstance(event, ev.SagaStarted) and event.trace is None


def test_a_worker_after_a_crash_links_its_drive_to_the_starter(otel: Otel, tmp_path: Path) -> None:
    from .procs.otel_worker import LEASE, traced

    url = f"sqlite:///{tmp_path / 'saga.db'}"
    with EventStore(url) as store, Coordinator(store, [traced]) as c, \
            otel.tracer.start_as_current_span("place order") as starter:
        saga_id = c.start("traced")
    ctx = starter.get_span_context()

    def worker(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tests.procs.otel_worker", "--url", url, *flags],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)

    crashed = worker("--crash")
    assert crashed.returncode == 9, crashed.stderr
    time.sleep(LEASE + 0.2)  # the dead worker's lease runs out
    done = worker()
    assert done.returncode == 0, done.stderr
    spans = [json.loads(line) for line in done.stdout.splitlines()]
    runs = [s for s in spans if s["name"] == "saga.run traced"]
    assert runs
    for run in runs:  # every drive links to the span that started the saga, in a trace of its own
        assert run["links"] == [{"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}]
        assert run["parent"] is None and run["trace_id"] != f"{ctx.trace_id:032x}"
        assert run["attributes"]["saga.id"] == saga_id
    steps = [s for s in spans if s["name"].startswith("saga.step ")]
    # reserve's first attempt died with the first worker (recorded lost); the second runs here.
    assert [(s["name"], s["attributes"]["saga.step.attempt"]) for s in steps] == [
        ("saga.step reserve", 2), ("saga.step confirm", 1)]
    assert {s["parent"] for s in steps} <= {run["span_id"] for run in runs}
    with EventStore(url) as store:
        assert store.summary(saga_id).status == SagaStatus.COMPLETED.value


# -- metrics -----------------------------------------------------------------------------------

def test_attempts_are_counted_and_timed_by_outcome(otel: Otel, sqlite_store: EventStore) -> None:
    with Coordinator(sqlite_store, [trip("counted", flaky=2)], clock=VirtualClock()) as c:
        c.execute("counted")
    counts = {(p.attributes["saga.step.name"], p.attributes["saga.step.outcome"]): p.value
              for p in otel.points("saga.step.attempts") if p.attributes["saga.name"] == "counted"}
    assert counts == {("book", "succeeded"): 1, ("pay", "failed"): 2, ("pay", "succeeded"): 1}
    durations = {(p.attributes["saga.step.name"], p.attributes["saga.step.outcome"]): p
                 for p in otel.points("saga.step.duration") if p.attributes["saga.name"] == "counted"}
    assert durations["pay", "failed"].count == 2
    assert 0 < durations["book", "succeeded"].sum < 1.0


def test_attempts_are_counted_by_the_outcome_the_log_records(otel: Otel, sqlite_store: EventStore) -> None:
    """Every outcome of the one rule (:func:`saga.attempts.outcome_of`), lost ones too: an
    attempt whose worker died, and one whose result the log cannot store."""
    saga = Saga("ruled")

    @saga.step(retry=Retry.fixed(1.0, attempts=3))
    def reserve(ctx: StepContext) -> str:
        if ctx.attempt == 1:
            raise WorkerDied  # the coordinator dies with it; the next one records it lost
        return "reserved"

    @reserve.compensate
    def release(ctx: StepContext) -> None:
        return None

    @saga.step(timeout=0.05, retry=Retry.fixed(1.0, attempts=3))
    def charge(ctx: StepContext) -> object:
        if ctx.attempt == 1:
            time.sleep(0.3)  # times out
        if ctx.attempt == 2:
            raise ConnectionError("bank busy")
        return object()  # a result no log can store: lost, not retried, so compensated

    clock = VirtualClock()
    with Coordinator(sqlite_store, [saga], clock=clock, lease=5.0) as c:
        saga_id = c.start("ruled")
        with pytest.raises(WorkerDied):
            c.run(saga_id)
    clock.advance(6.0)  # the dead worker's lease runs out
    with Coordinator(sqlite_store, [saga], clock=clock, lease=5.0) as c:
        assert c.run(saga_id).status is SagaStatus.COMPENSATED
    logged = Counter((a.step, a.compensation, a.outcome) for a in project(
        (s.seq, s.event, s.data) for s in sqlite_store.load(saga_id)))
    assert logged == {("reserve", False, "lost"): 1, ("reserve", False, "succeeded"): 1,
                      ("charge", False, "timed_out"): 1, ("charge", False, "failed"): 1,
                      ("charge", False, "lost"): 1, ("reserve", True, "succeeded"): 1}
    counted = Counter({(p.attributes["saga.step.name"], p.attributes["saga.step.compensation"],
                        p.attributes["saga.step.outcome"]): p.value
                       for p in otel.points("saga.step.attempts") if p.attributes["saga.name"] == "ruled"})
    assert counted == logged


def test_the_gauge_reads_sagas_by_status_from_the_store(otel: Otel, store: EventStore) -> None:
    with Coordinator(store, [trip("gauged"), trip("gauged-refused", refuse=True)],
                     clock=VirtualClock()) as c:
        for _ in range(3):
            c.execute("gauged")
        c.execute("gauged-refused")
        c.start("gauged")
        values = {(p.attributes["saga.name"], p.attributes["saga.status"]): p.value
                  for p in otel.points("saga.sagas") if str(p.attributes["saga.name"]).startswith("gauged")}
    assert values == {("gauged", "completed"): 3, ("gauged", "running"): 1,
                      ("gauged-refused", "compensated"): 1}


# -- without an SDK, without the API -----------------------------------------------------------

def test_without_an_sdk_nothing_is_recorded_and_nothing_stored(sqlite_store: EventStore) -> None:
    tracer = trace.get_tracer("tests")
    with Coordinator(sqlite_store, [trip()], clock=VirtualClock()) as c, \
            tracer.start_as_current_span("no sdk"):
        saga_id = c.execute("trip").saga_id
    assert c.get(saga_id).status is SagaStatus.COMPLETED
    assert "trace" not in sqlite_store.load(saga_id)[0].data


def test_without_the_api_installed_sagas_run_as_before(tmp_path: Path) -> None:
    script = f"""
import sys
sys.modules["opentelemetry"] = None  # as if the [otel] extra were not installed
from saga import Coordinator, EventStore, Saga
saga = Saga("plain")
saga.step(lambda ctx: 1, name="one")
with EventStore("sqlite:///{tmp_path / 'plain.db'}") as store, Coordinator(store, [saga]) as c:
    print(c.execute("plain").status.value)
assert "opentelemetry.trace" not in sys.modules
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "completed"

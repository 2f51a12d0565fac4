"""Http against real services on loopback: answers, classification, Retry-After, the key."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from saga import Coordinator, EventStore, PermanentError, Retry, Saga, StepContext, VirtualClock
from saga.adapters import (
    AdapterError,
    CallTimedOut,
    ConnectionFailed,
    Http,
    HttpError,
    HttpRejected,
    InvalidAdapter,
    InvalidRequest,
)

from .loopback import Reply, Service


def context(clock: VirtualClock | None = None, key: str = "saga-1/book/do") -> StepContext:
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    return StepContext(
        saga_id="saga-1", saga_name="trip", step="book", attempt=1, idempotency_key=key,
        input=None, results={}, **extra,
    )


@pytest.fixture
def service() -> Iterator[Service]:
    s = Service("api")
    yield s
    s.close()


def call(http: Http, ctx: StepContext, how: str, **request: Any) -> Any:
    """One call the plain way or the async way (both must behave the same)."""
    if how == "sync":
        return http(ctx, **request)
    return asyncio.run(http.acall(ctx, **request))


HOW = pytest.mark.parametrize("how", ["sync", "async"])


@HOW
def test_answers_are_decoded_json_text_or_none(service: Service, how: str) -> None:
    service.then(Reply(200, {"booking": 7}), Reply(201, "plain words"), Reply(204))
    http = Http("POST", service.url + "/bookings")
    ctx = context()
    assert call(http, ctx, how, json={"nights": 2}) == {"booking": 7}
    assert call(http, ctx, how) == "plain words"
    assert call(http, ctx, how) is None
    assert service.requests[0].json() == {"nights": 2}
    assert [c.outcome for c in ctx.calls.calls()] == ["ok", "ok", "ok"]


@HOW
@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_408_429_and_5xx_are_retryable(service: Service, how: str, status: int) -> None:
    service.then(Reply(status, "try later"))
    ctx = context()
    with pytest.raises(HttpError) as caught:
        call(Http("GET", service.url + "/x"), ctx, how)
    e = caught.value
    assert e.status == status and "try later" in str(e)
    assert not isinstance(e, PermanentError)
    assert Retry.fixed(1.0).is_retryable(e)
    assert e.retry_after is None
    [c] = ctx.calls.calls()
    assert c.outcome == "error" and c.error is not None and c.error.status == status


@HOW
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
def test_other_4xx_are_permanent_with_status_and_body_start(service: Service, how: str, status: int) -> None:
    service.then(Reply(status, {"error": "no such room " + "x" * 1000}))
    ctx = context()
    with pytest.raises(PermanentError) as caught:
        call(Http("POST", service.url + "/rooms"), ctx, how)
    e = caught.value
    assert isinstance(e, HttpRejected) and e.status == status
    assert str(status) in str(e) and "no such room" in str(e)
    assert len(str(e)) < 400  # the start of the body, not all of it
    assert not Retry.fixed(1.0).is_retryable(e)
    assert ctx.calls.calls()[0].error is not None
    assert ctx.calls.calls()[0].error.status == status  # type: ignore[union-attr]


@HOW
def test_retry_after_in_seconds_is_counted_from_the_context_clock(service: Service, how: str) -> None:
    clock = VirtualClock()
    service.then(Reply(503, headers={"Retry-After": "120"}))
    with pytest.raises(HttpError) as caught:
        call(Http("GET", service.url), context(clock), how)
    assert caught.value.retry_after == clock.now() + timedelta(seconds=120)


@HOW
def test_retry_after_as_an_http_date(service: Service, how: str) -> None:
    service.then(Reply(429, headers={"Retry-After": "Wed, 21 Oct 2037 07:28:00 GMT"}))
    with pytest.raises(HttpError) as caught:
        call(Http("GET", service.url), context(), how)
    assert caught.value.retry_after == datetime(2037, 10, 21, 7, 28, tzinfo=UTC)


def test_unreadable_retry_after_is_ignored(service: Service) -> None:
    service.then(Reply(503, headers={"Retry-After": "soon"}))
    with pytest.raises(HttpError) as caught:
        Http("GET", service.url)(context())
    assert caught.value.retry_after is None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@HOW
def test_connection_refused_is_retryable(how: str) -> None:
    ctx = context()
    with pytest.raises(ConnectionFailed) as caught:
        call(Http("GET", f"http://127.0.0.1:{_closed_port()}/x"), ctx, how)
    assert isinstance(caught.value, AdapterError) and Retry.fixed(1.0).is_retryable(caught.value)
    assert ctx.calls.calls()[0].outcome == "error"


@HOW
def test_a_slow_service_times_out_retryably(service: Service, how: str) -> None:
    service.then(Reply(200, {"late": True}, delay=2.0))
    with pytest.raises(CallTimedOut):
        call(Http("GET", service.url, timeout=0.2), context(), how)
    assert service.left.wait(2.0), "the server sees the client give up"


@HOW
def test_every_request_carries_the_idempotency_key_over_other_headers(service: Service, how: str) -> None:
    http = Http("PUT", service.url + "/r", headers={"X-Tenant": "acme", "idempotency-key": "no"})
    call(http, context(key="k-1"), how, headers={"X-Trace": "t1", "Idempotency-Key": "nope"})
    seen = service.requests[0].headers
    assert seen["Idempotency-Key"] == "k-1"
    assert seen["X-Tenant"] == "acme" and seen["X-Trace"] == "t1"
    assert [k for k in seen if k.lower() == "idempotency-key"] == ["Idempotency-Key"]


def test_path_placeholders_and_params_fill_the_url(service: Service) -> None:
    http = Http("DELETE", service.url + "/bookings/{ref}")
    http(context(), path={"ref": "a b/c"}, params={"reason": "car declined"})
    assert service.requests[0].method == "DELETE"
    assert service.requests[0].path == "/bookings/a%20b%2Fc?reason=car+declined"
    with pytest.raises(InvalidRequest, match="path needs ref"):
        http(context())


def test_the_recorded_target_has_no_password(service: Service) -> None:
    url = service.url.replace("http://", "http://agent:s3cret@") + "/secure"
    ctx = context()
    Http("GET", url)(ctx)
    assert "Authorization" in service.requests[0].headers  # the password was still sent
    [c] = ctx.calls.calls()
    assert "s3cret" not in c.target and c.target.startswith("http://agent@127.0.0.1:")
    assert "s3cret" not in Http("GET", url).target


def test_calls_are_timed_on_the_context_clock(service: Service) -> None:
    clock = VirtualClock()
    ctx = context(clock)
    Http("GET", service.url)(ctx)
    [c] = ctx.calls.calls()
    assert c.started_at == clock.now() and c.duration == 0.0  # virtual time did not move
    assert c.to_json()["started_at"] == "2030-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("FETCH", "http://127.0.0.1/"), {}, "method must be one of"),
        (("GET", "ftp://127.0.0.1/"), {}, "http:// or https://"),
        (("GET", "http:///nohost"), {}, "with a host"),
        (("GET", "http://127.0.0.1/{0}"), {}, "plain names"),
        (("GET", "http://127.0.0.1/"), {"timeout": 0}, "timeout must be a positive"),
        (("GET", "http://127.0.0.1/"), {"headers": {"X": 1}}, "headers must map strings"),
    ],
)
def test_bad_options_are_refused_when_built(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidAdapter, match=message):
        Http(*args, **kwargs)


def test_without_httpx_the_import_works_and_use_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['httpx'] = None\n"
        "from saga.adapters import Http\n"
        "try:\n    Http('GET', 'http://127.0.0.1/')\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "MissingDependency Http needs httpx: pip install 'saga-coordinator[http]'"


def test_the_service_sees_one_key_on_every_attempt_through_the_coordinator(
    service: Service, sqlite_url: str
) -> None:
    service.then(Reply(503), Reply(502), Reply(200, {"ref": "H-1"}))
    hotel = Http("POST", service.url + "/bookings")
    saga = Saga("stay")

    @saga.step(retry=Retry.fixed(1.0, attempts=3))
    def book(ctx: StepContext) -> Any:
        return hotel(ctx, json={"nights": 1})

    clock = VirtualClock()
    with EventStore(sqlite_url) as store, Coordinator(store, [saga], clock=clock) as coordinator:
        view = coordinator.execute("stay", saga_id="stay-1")
    assert view.status.value == "completed" and view.results["book"] == {"ref": "H-1"}
    assert [r.headers["Idempotency-Key"] for r in service.requests] == ["stay-1/book/do"] * 3

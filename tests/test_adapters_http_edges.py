"""Http at its edges, against real services on loopback: redirects (another origin, loops,
other schemes), answers larger than the adapter reads, and Retry-After values it cannot use."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from saga import Coordinator, EventStore, PermanentError, Retry, Saga, StepContext, VirtualClock
from saga import events as ev
from saga.adapters import Http, HttpBodyTooLarge, HttpError, HttpRejected, InvalidAdapter
from saga.inspection.timeline import show

from .loopback import Reply, Service, services


def context(clock: VirtualClock | None = None) -> StepContext:
    return StepContext(
        saga_id="saga-1", saga_name="trip", step="book", attempt=1, idempotency_key="saga-1/book/do",
        input=None, results={}, clock=clock or VirtualClock(),
    )


@pytest.fixture
def pair() -> Iterator[list[Service]]:
    with services("api", "elsewhere") as started:
        yield started


HOW = pytest.mark.parametrize("how", ["sync", "async"])


def call(http: Http, ctx: StepContext, how: str, **request: Any) -> Any:
    if how == "sync":
        return http(ctx, **request)
    return asyncio.run(http.acall(ctx, **request))


def hops(ctx: StepContext) -> list[tuple[str, str, int | None]]:
    """(target, outcome, status) of each recorded call, in the order they started."""
    return [(c.target, c.outcome, c.error.status if c.error else None) for c in ctx.calls.calls()]


def attempts(store: EventStore, saga_id: str) -> list[ev.StepAttemptFailed | ev.StepSucceeded]:
    kinds = (ev.StepAttemptFailed, ev.StepSucceeded)
    return [s.event for s in store.load(saga_id) if isinstance(s.event, kinds)]


# -- redirects --------------------------------------------------------------------------------


@HOW
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("where", ["another port", "another host"])
def test_a_redirect_to_another_origin_is_refused_and_nothing_is_sent_there(
    pair: list[Service], how: str, status: int, where: str
) -> None:
    api, elsewhere = pair
    port = api.url.rsplit(":", 1)[1]
    target = elsewhere.url + "/steal" if where == "another port" else f"http://localhost:{port}/steal"
    api.then(Reply(status, headers={"Location": target}))
    ctx = context()
    http = Http("POST", api.url + "/charge", headers={"X-Api-Key": "k-123"})
    with pytest.raises(HttpRejected) as caught:
        call(http, ctx, how, json={"card": "4111"})
    e = caught.value
    assert isinstance(e, PermanentError) and isinstance(e, HttpRejected) and e.status == status
    assert target in str(e) and "another origin" in str(e)
    assert elsewhere.hits == 0 and api.hits == 1, "neither the body nor the key left for the other origin"
    [(first, outcome, code)] = hops(ctx)
    assert (first, outcome, code) == (api.url + "/charge", "error", status)
    assert target in ctx.calls.calls()[0].error.message  # type: ignore[union-attr]


@HOW
def test_redirects_within_the_origin_are_followed_and_each_hop_is_in_the_call_log(
    pair: list[Service], how: str
) -> None:
    api, _ = pair
    api.then(
        Reply(308, headers={"Location": "/v2/charge"}),  # same method, same body
        Reply(303, headers={"Location": api.url + "/receipts/7"}),  # see other: a GET
        Reply(200, {"receipt": 7}),
    )
    ctx = context()
    http = Http("POST", api.url + "/charge", headers={"X-Api-Key": "k-123"})
    assert call(http, ctx, how, json={"amount": 5}) == {"receipt": 7}
    seen = [(r.method, r.path, r.json(), r.headers.get("X-Api-Key"), r.headers.get("Idempotency-Key"))
            for r in api.requests]
    assert seen == [
        ("POST", "/charge", {"amount": 5}, "k-123", "saga-1/book/do"),
        ("POST", "/v2/charge", {"amount": 5}, "k-123", "saga-1/book/do"),
        ("GET", "/receipts/7", None, "k-123", "saga-1/book/do"),
    ]
    assert hops(ctx) == [
        (api.url + "/charge", "ok", None),
        (api.url + "/v2/charge", "ok", None),
        (api.url + "/receipts/7", "ok", None),
    ]


@HOW
def test_a_redirect_loop_is_a_permanent_rejection_with_every_hop_logged(
    pair: list[Service], how: str
) -> None:
    api, _ = pair
    api.default = Reply(302, headers={"Location": "/again"})
    ctx = context()
    with pytest.raises(HttpRejected, match="redirects") as caught:
        call(Http("GET", api.url + "/start"), ctx, how)
    assert caught.value.status == 302
    logged = hops(ctx)
    assert 2 < len(logged) == api.hits <= 21
    assert logged[0] == (api.url + "/start", "ok", None)
    assert set(logged[1:-1]) == {(api.url + "/again", "ok", None)}
    assert logged[-1] == (api.url + "/again", "error", 302)


@HOW
def test_a_redirect_to_another_scheme_is_a_permanent_rejection(pair: list[Service], how: str) -> None:
    api, _ = pair
    api.then(Reply(302, headers={"Location": "ftp://127.0.0.1/file"}))
    ctx = context()
    with pytest.raises(HttpRejected, match=r"ftp://127\.0\.0\.1/file") as caught:
        call(Http("GET", api.url + "/file"), ctx, how)
    assert caught.value.status == 302
    assert hops(ctx) == [(api.url + "/file", "error", 302)]


def test_through_the_coordinator_a_cross_origin_redirect_fails_the_step_once_and_says_where(
    pair: list[Service], sqlite_url: str
) -> None:
    api, elsewhere = pair
    api.default = Reply(307, headers={"Location": elsewhere.url + "/charge"})
    pay = Saga("pay")
    pay.call("charge", Http("POST", api.url + "/charge", headers={"X-Api-Key": "k-123"}),
             request={"json": {"amount": 5}}, retry=Retry.fixed(0.01, attempts=3))
    with EventStore(sqlite_url) as store, Coordinator(store, [pay], clock=VirtualClock()) as c:
        view = c.execute("pay", saga_id="pay-1")
        [failed] = attempts(store, "pay-1")
        text = "\n".join(show(store, "pay-1"))
    assert view.status.value != "completed"
    assert isinstance(failed, ev.StepAttemptFailed) and failed.error_type == "saga.adapters.HttpRejected"
    assert not failed.retried, "a refused redirect is final"
    [hop] = failed.calls
    assert hop.error is not None and hop.error.status == 307
    assert elsewhere.url + "/charge" in hop.error.message
    assert elsewhere.url + "/charge" in text
    assert api.hits == 1 and elsewhere.hits == 0


def test_through_the_coordinator_a_redirect_loop_is_not_retried(pair: list[Service], sqlite_url: str) -> None:
    api, _ = pair
    api.default = Reply(301, headers={"Location": "/loop"})
    job = Saga("job")
    job.call("fetch", Http("GET", api.url + "/loop"), retry=Retry.fixed(0.01, attempts=3))
    with EventStore(sqlite_url) as store, Coordinator(store, [job], clock=VirtualClock()) as c:
        c.execute("job", saga_id="job-1")
        [failed] = attempts(store, "job-1")
    assert isinstance(failed, ev.StepAttemptFailed)
    assert failed.error_type == "saga.adapters.HttpRejected" and not failed.retried
    assert len(failed.calls) == api.hits > 2


# -- how much of an answer is read ------------------------------------------------------------


@HOW
@pytest.mark.parametrize("streamed", [False, True])
def test_an_answer_over_the_bound_is_an_error_and_one_at_the_bound_is_not(
    pair: list[Service], how: str, streamed: bool
) -> None:
    api, _ = pair

    def answer(size: int) -> Reply:
        if streamed:  # chunked: the adapter learns the size only by reading
            return Reply(200, b"x" * (size // 4), pieces=4)
        return Reply(200, b"x" * size)

    api.then(answer(1000), answer(1004))
    http = Http("GET", api.url + "/report", max_body=1000)
    assert call(http, context(), how) == "x" * 1000
    ctx = context()
    with pytest.raises(HttpBodyTooLarge) as caught:
        call(http, ctx, how)
    e = caught.value
    assert isinstance(e, PermanentError)
    assert caught.value.status == 200 and caught.value.limit == 1000
    assert "1000 bytes" in str(e)
    [c] = ctx.calls.calls()
    assert c.outcome == "error" and c.error is not None and c.error.type == "HttpBodyTooLarge"


@HOW
def test_an_error_answer_is_read_only_as_far_as_its_message_needs(pair: list[Service], how: str) -> None:
    api, _ = pair
    api.then(Reply(404, b"no such room " + b"x" * 5000), Reply(503, b"busy " + b"y" * 5000, pieces=3))
    http = Http("GET", api.url, max_body=100)
    with pytest.raises(HttpRejected, match="no such room") as rejected:
        call(http, context(), how)
    assert rejected.value.status == 404 and len(str(rejected.value)) < 400
    with pytest.raises(HttpError, match="busy") as busy:
        call(http, context(), how)
    assert busy.value.status == 503


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10", None])
def test_the_bound_must_be_a_positive_whole_number_of_bytes(bad: Any) -> None:
    with pytest.raises(InvalidAdapter, match="max_body must be a whole number of bytes"):
        Http("GET", "http://127.0.0.1/", max_body=bad)


def test_the_default_bound_is_well_under_100_mb() -> None:
    assert 1_000_000 <= Http("GET", "http://127.0.0.1/").max_body <= 20 * 1024 * 1024


_MEASURE = textwrap.dedent("""
    import asyncio, json, resource, sys
    from saga import StepContext
    from saga.adapters import Http, HttpBodyTooLarge

    url = sys.argv[1]
    ctx = StepContext(saga_id="s", saga_name="n", step="get", attempt=1, idempotency_key="k",
                      input=None, results={})
    http = Http("GET", url, timeout=30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errors = []
    for how in ("sync", "async"):
        try:
            http(ctx) if how == "sync" else asyncio.run(http.acall(ctx))
        except HttpBodyTooLarge as e:
            errors.append(type(e).__name__)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"grew_kib": after - before, "errors": errors}))
""")


def test_a_large_streamed_answer_is_not_held_in_memory(pair: list[Service]) -> None:
    api, _ = pair
    mib = b"z" * (1024 * 1024)
    api.default = Reply(200, mib, pieces=200)  # 200 MiB, chunked, twice
    out = subprocess.run([sys.executable, "-c", _MEASURE, api.url + "/dump"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    measured = json.loads(out.stdout)
    assert measured["errors"] == ["HttpBodyTooLarge", "HttpBodyTooLarge"]
    assert measured["grew_kib"] < 64 * 1024, f"the process grew by {measured['grew_kib']} KiB"


def test_through_the_coordinator_an_answer_too_large_is_final_and_the_step_is_compensated(
    pair: list[Service], sqlite_url: str
) -> None:
    api, _ = pair
    api.then(Reply(201, b"r" * 5000), Reply(204))  # the booking happened; its answer is too large
    trip = Saga("trip")
    trip.call("book", Http("POST", api.url + "/bookings", max_body=1000),
              compensate=Http("DELETE", api.url + "/bookings"), retry=Retry.fixed(0.01, attempts=3))
    with EventStore(sqlite_url) as store, Coordinator(store, [trip], clock=VirtualClock()) as c:
        view = c.execute("trip", saga_id="trip-1")
        [failed] = attempts(store, "trip-1")
    assert isinstance(failed, ev.StepAttemptFailed) and failed.error_type == "saga.adapters.HttpBodyTooLarge"
    assert not failed.retried and failed.lost, "the service acted: its effect is in doubt"
    assert view.status.value == "compensated"
    assert [r.method for r in api.requests] == ["POST", "DELETE"]


# -- Retry-After values that name no usable time ----------------------------------------------


@HOW
@pytest.mark.parametrize(
    "value", ["\u00b2", "99999999999999999999", "1" * 5000, "Fri, 31 Dec 99999 23:59:59 GMT"]
)
def test_a_retry_after_that_names_no_usable_time_is_ignored_and_the_status_kept(
    pair: list[Service], how: str, value: str
) -> None:
    api, _ = pair
    api.then(Reply(503, "busy", headers={"Retry-After": value}))
    ctx = context()
    with pytest.raises(HttpError) as caught:
        call(Http("GET", api.url), ctx, how)
    assert caught.value.status == 503 and caught.value.retry_after is None
    [c] = ctx.calls.calls()
    assert c.error is not None and (c.error.type, c.error.status) == ("HttpError", 503)


def test_through_the_coordinator_an_unusable_retry_after_is_retried_by_the_policy(
    pair: list[Service], sqlite_url: str
) -> None:
    api, _ = pair
    api.then(Reply(503, headers={"Retry-After": "99999999999999999999"}), Reply(200, {"ok": 1}))
    job = Saga("job")
    job.call("fetch", Http("GET", api.url), retry=Retry.fixed(1.0, attempts=3))
    with EventStore(sqlite_url) as store, Coordinator(store, [job], clock=VirtualClock()) as c:
        view = c.execute("job", saga_id="job-1")
        failed, _ = attempts(store, "job-1")
    assert view.status.value == "completed"
    assert isinstance(failed, ev.StepAttemptFailed) and failed.error_type == "saga.adapters.HttpError"
    assert failed.calls[0].error is not None and failed.calls[0].error.status == 503

"""CircuitBreaker against a real service on loopback: opens, rejects fast, one trial, closes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from saga import PermanentError, Retry, StepContext, VirtualClock
from saga.adapters import (
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    Function,
    Hedge,
    Http,
    HttpError,
    HttpRejected,
    InvalidAdapter,
)

from .loopback import Reply, Service


@pytest.fixture
def payments() -> Iterator[Service]:
    s = Service("payments")
    yield s
    s.close()


def context(clock: VirtualClock, attempt: int = 1) -> StepContext:
    return StepContext(
        saga_id="o-1", saga_name="order", step="charge", attempt=attempt,
        idempotency_key="o-1/charge/do", input=None, results={}, clock=clock,
    )


def test_opens_rejects_fast_lets_one_trial_through_and_closes(payments: Service) -> None:
    clock = VirtualClock()
    payments.then(Reply(503), Reply(502), Reply(500))
    breaker = CircuitBreaker(Http("POST", payments.url + "/charge"), failures=3, reset_after=30.0)

    for _ in range(3):
        with pytest.raises(HttpError):
            breaker(context(clock))
    assert breaker.state is BreakerState.OPEN and payments.hits == 3

    # Open: refused at once, without reaching the service, for reset_after seconds.
    opened = clock.now()
    ctx = context(clock)
    began = time.monotonic()
    for _ in range(50):
        with pytest.raises(CircuitOpen) as caught:
            breaker(ctx)
    assert time.monotonic() - began < 0.5
    assert payments.hits == 3
    assert caught.value.retry_after == opened + timedelta(seconds=30)
    assert Retry.fixed(1.0).is_retryable(caught.value)
    assert {(c.outcome, c.adapter) for c in ctx.calls.calls()} == {("rejected", "http")}
    clock.advance(29.9)
    with pytest.raises(CircuitOpen):
        breaker(context(clock))
    assert payments.hits == 3

    # Half-open: exactly one trial goes through; calls meanwhile are still refused.
    clock.advance(0.1)
    payments.then(Reply(200, {"charged": True}, delay=0.5))
    answers: list[Any] = []
    trial = threading.Thread(target=lambda: answers.append(breaker(context(clock))))
    trial.start()
    while payments.hits < 4:
        time.sleep(0.005)
    assert breaker.state is BreakerState.HALF_OPEN
    rejected = 0
    for _ in range(5):
        try:
            breaker(context(clock))
        except CircuitOpen:
            rejected += 1
    trial.join()
    assert rejected == 5 and answers == [{"charged": True}] and payments.hits == 4

    # The trial succeeded: closed again, calls go through.
    assert breaker.state is BreakerState.CLOSED
    assert breaker(context(clock)) == {"ok": True}
    assert payments.hits == 5


def test_a_failed_trial_opens_it_for_another_period(payments: Service) -> None:
    clock = VirtualClock()
    payments.then(Reply(503), Reply(503))
    breaker = CircuitBreaker(Http("POST", payments.url), failures=1, reset_after=10.0)
    with pytest.raises(HttpError):
        breaker(context(clock))
    clock.advance(10)
    with pytest.raises(HttpError):
        breaker(context(clock))  # the trial
    assert breaker.state is BreakerState.OPEN and payments.hits == 2
    clock.advance(9)
    with pytest.raises(CircuitOpen) as caught:
        breaker(context(clock))
    assert caught.value.retry_after == clock.now() + timedelta(seconds=1)
    clock.advance(1)
    assert breaker(context(clock)) == {"ok": True}
    assert breaker.state is BreakerState.CLOSED


def test_only_consecutive_failures_count_and_permanent_errors_are_answers(payments: Service) -> None:
    clock = VirtualClock()
    payments.then(*(Reply(s) for s in (503, 503, 200, 503, 404, 503, 503, 503)))
    breaker = CircuitBreaker(Http("GET", payments.url), failures=3, reset_after=5)
    outcomes = []
    for _ in range(7):
        try:
            breaker(context(clock))
            outcomes.append("ok")
        except PermanentError:
            outcomes.append("permanent")
        except HttpError:
            outcomes.append("retryable")
    assert outcomes == ["retryable", "retryable", "ok", "retryable", "permanent", "retryable", "retryable"]
    assert breaker.state is BreakerState.CLOSED
    with pytest.raises(HttpError):
        breaker(context(clock))
    assert breaker.state is BreakerState.OPEN


def test_async_calls_share_the_state(payments: Service) -> None:
    clock = VirtualClock()
    payments.then(Reply(503), Reply(503))
    breaker = CircuitBreaker(Http("POST", payments.url), failures=2, reset_after=1)

    async def three() -> list[str]:
        out = []
        for _ in range(3):
            try:
                await breaker.acall(context(clock))
                out.append("ok")
            except CircuitOpen:
                out.append("open")
            except HttpError:
                out.append("error")
        return out

    assert asyncio.run(three()) == ["error", "error", "open"]
    with pytest.raises(CircuitOpen):
        breaker(context(clock))
    clock.advance(1)
    assert asyncio.run(breaker.acall(context(clock))) == {"ok": True}


def test_a_trial_cancelled_by_a_hedge_lets_the_next_call_try(payments: Service) -> None:
    clock = VirtualClock()
    payments.then(Reply(503), Reply(200, {"late": True}, delay=5.0))
    breaker = CircuitBreaker(Http("GET", payments.url), failures=1, reset_after=1)
    with pytest.raises(HttpError):
        breaker(context(clock))
    clock.advance(1)
    hedge = Hedge([breaker, Function(lambda: "other", target="other")], after=0.05)
    assert hedge(context(clock)) == "other"  # the trial lost the race and was cancelled
    assert breaker.state is BreakerState.OPEN
    assert breaker(context(clock)) == {"ok": True}  # so this call is the next trial
    assert breaker.state is BreakerState.CLOSED


def test_a_breaker_around_a_permanent_rejection_stays_closed(payments: Service) -> None:
    payments.default = Reply(409)
    breaker = CircuitBreaker(Http("POST", payments.url), failures=1)
    for _ in range(3):
        with pytest.raises(HttpRejected):
            breaker(context(VirtualClock()))
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failures": 0}, "failures must be"),
        ({"failures": 1.5}, "failures must be"),
        ({"reset_after": 0}, "reset_after must be"),
        ({"reset_after": float("nan")}, "reset_after must be"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidAdapter, match=message):
        CircuitBreaker(Function(print), **kwargs)
    with pytest.raises(InvalidAdapter, match="expected an adapter"):
        CircuitBreaker(print)


# -- the state machine, against a model -------------------------------------------------------

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.sampled_from(["ok", "fail", "permanent"])),
        st.tuples(st.just("wait"), st.floats(min_value=0.0, max_value=20.0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@example(steps=[("call", "fail"), ("wait", 1.9765625), ("call", "ok")], failures=1,
         reset_after=1.9765625)  # a period that is not a whole number of microseconds
@given(steps=STEPS, failures=st.integers(1, 4), reset_after=st.floats(0.5, 15.0))
def test_the_breaker_follows_its_model(
    steps: list[tuple[str, Any]], failures: int, reset_after: float
) -> None:
    clock = VirtualClock()
    reached: list[str] = []
    planned: list[str] = []

    def service() -> str:
        outcome = planned.pop()
        reached.append(outcome)
        if outcome == "fail":
            raise ConnectionError("down")
        if outcome == "permanent":
            raise PermanentError("bad request")
        return "ok"

    breaker = CircuitBreaker(Function(service, target="svc"), failures=failures, reset_after=reset_after)
    consecutive, opened_at = 0, None  # the model
    for kind, arg in steps:
        if kind == "wait":
            clock.advance(arg)
            continue
        now = clock.now()
        # Time as the clock keeps it: whole microseconds (1.9765625 s is 1976562 µs).
        may_call = opened_at is None or now >= opened_at + timedelta(seconds=reset_after)
        trial = opened_at is not None and may_call
        planned.append(arg)
        before = len(reached)
        try:
            breaker(context(clock))
        except CircuitOpen as e:
            assert not may_call, "refused a call the model lets through"
            assert opened_at is not None and e.retry_after == opened_at + timedelta(seconds=reset_after)
            planned.pop()
            continue
        except (ConnectionError, PermanentError):
            pass
        assert may_call and len(reached) == before + 1, "called the service while open"
        if arg == "fail":
            consecutive += 1
            if trial or consecutive >= failures:
                opened_at = now
        else:
            consecutive, opened_at = 0, None
        assert breaker.state is (BreakerState.CLOSED if opened_at is None else BreakerState.OPEN)

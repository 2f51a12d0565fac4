"""A circuit breaker whose trial call hangs: against a real service on loopback that drips its
answer a byte every half second, so no read ever times out."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from saga import Coordinator, EventStore, Retry, Saga, StepContext, VirtualClock
from saga import events as ev
from saga.adapters import BreakerState, CircuitBreaker, CircuitOpen, Function, Http, HttpError

from .loopback import Reply, Service


@pytest.fixture
def payments() -> Iterator[Service]:
    s = Service("payments")
    yield s
    s.close()


def context(clock: VirtualClock, deadline: datetime | None = None) -> StepContext:
    return StepContext(
        saga_id="o-1", saga_name="order", step="charge", attempt=1, idempotency_key="o-1/charge/do",
        input=None, results={}, clock=clock, attempt_deadline=deadline,
    )


def drip(status: int, seconds: float) -> Reply:
    """An answer whose body comes a byte every half second for ``seconds``."""
    return Reply(status, b"x", pieces=max(2, int(seconds / 0.5)), pause=0.5)


@pytest.mark.parametrize("limit", [5.0, None], ids=["attempt has a time limit", "attempt has none"])
def test_a_trial_still_out_at_its_time_counts_as_failed(payments: Service, limit: float | None) -> None:
    clock = VirtualClock()
    payments.then(Reply(503), drip(503, 2.0))
    breaker = CircuitBreaker(Http("POST", payments.url + "/charge"), failures=1, reset_after=30)
    with pytest.raises(HttpError):
        breaker(context(clock))
    clock.advance(30)

    # The trial: it hangs on the dripping service, in a thread of its own.
    began = clock.now()
    deadline = None if limit is None else began + timedelta(seconds=limit)
    late: list[Any] = []
    trial = threading.Thread(target=lambda: late.append(_outcome(breaker, context(clock, deadline))))
    trial.start()
    while payments.hits < 2:
        time.sleep(0.005)

    # Meanwhile calls are refused, and told when the trial's time is up: its attempt's
    # limit, or reset_after when the attempt has none.
    up = began + timedelta(seconds=limit if limit is not None else 30)
    with pytest.raises(CircuitOpen) as caught:
        breaker(context(clock))
    assert caught.value.retry_after == up
    assert breaker.state is BreakerState.HALF_OPEN

    # At that time the trial counts as failed: open for another period from then.
    clock.advance((up - clock.now()).total_seconds())
    with pytest.raises(CircuitOpen) as caught:
        breaker(context(clock))
    assert caught.value.retry_after == up + timedelta(seconds=30)
    assert breaker.state is BreakerState.OPEN and payments.hits == 2

    # After it, a new trial goes through and closes the circuit ...
    clock.advance(30)
    assert breaker(context(clock)) == {"ok": True}
    assert breaker.state is BreakerState.CLOSED and payments.hits == 3

    # ... and the old trial's late end, a failure, changes nothing: it was counted.
    trial.join(10)
    assert late == ["HttpError"]
    assert breaker.state is BreakerState.CLOSED
    assert breaker(context(clock)) == {"ok": True}


def _outcome(breaker: CircuitBreaker, ctx: StepContext) -> str:
    try:
        breaker(ctx)
    except Exception as e:
        return type(e).__name__
    return "ok"


def test_through_the_coordinator_a_trial_abandoned_at_the_step_timeout_lets_the_saga_recover(
    payments: Service, sqlite_url: str
) -> None:
    payments.then(Reply(503), drip(200, 4.0), Reply(200, {"charged": True}))
    breaker = CircuitBreaker(Http("POST", payments.url + "/charge"), failures=1, reset_after=1.0)
    pay = Saga("pay")
    pay.call("charge", breaker, retry=Retry.fixed(0.05, attempts=8), timeout=0.3)

    with EventStore(sqlite_url) as store, Coordinator(store, [pay]) as coordinator:
        view = coordinator.execute("pay", saga_id="pay-1")
        outcomes = [s.event for s in store.load("pay-1")
                    if isinstance(s.event, ev.StepAttemptFailed | ev.StepSucceeded)]

    assert view.status.value == "completed" and view.results["charge"] == {"charged": True}
    kinds = [
        "timed out" if isinstance(e, ev.StepAttemptFailed) and e.timed_out
        else e.calls[0].outcome
        for e in outcomes
    ]
    assert kinds == ["error", "rejected", "timed out", "rejected", "ok"]
    for e in outcomes:
        if isinstance(e, ev.StepAttemptFailed) and not e.timed_out and e.calls[0].outcome == "rejected":
            # Each refusal says when the breaker lets a trial through, and the retry waits for it.
            assert e.next_attempt_at is not None
            assert (e.next_attempt_at - e.at).total_seconds() > 0.5
    assert payments.hits == 3, "no second call while the trial was out, one trial after it"


def test_a_trial_that_answers_after_its_attempt_limit_counts_as_failed_as_the_attempt_does() -> None:
    clock = VirtualClock()
    answers: Iterator[str | Exception] = iter([ConnectionError("down"), "late", "ok"])

    def service() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        if answer == "late":
            clock.advance(10)  # past the attempt's limit: the coordinator records it timed out
        return answer

    breaker = CircuitBreaker(Function(service, target="svc"), failures=1, reset_after=30)
    with pytest.raises(ConnectionError):
        breaker(context(clock))
    clock.advance(30)
    deadline = clock.now() + timedelta(seconds=5)
    assert breaker(context(clock, deadline)) == "late"
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as caught:
        breaker(context(clock))
    assert caught.value.retry_after == deadline + timedelta(seconds=30)
    clock.advance(25)
    assert breaker(context(clock)) == "ok" and breaker.state is BreakerState.CLOSED

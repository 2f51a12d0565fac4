"""The analytic predictions, checked against the formulas computed by hand."""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest

from saga import Retry, Saga
from saga.simulate import Empirical, Fixed, LogNormal, Scenario, predict
from saga.simulate.predict import nominal_delays
from tests.fixtures.simulate_sagas import exponential, hurried, jittery, slow, trip


def test_one_step_with_k_attempts() -> None:
    p = predict(exponential, Scenario(fail={"call": 0.4}), samples=1000)
    step = p.steps["call"]
    assert step.success == pytest.approx(1 - 0.4**5)
    assert step.expected_attempts == pytest.approx((1 - 0.4**5) / (1 - 0.4))
    assert step.delays == [0.5, 1.0, 2.0, 4.0]
    assert step.expected_backoff == pytest.approx(0.5 * 0.4 + 1.0 * 0.4**2 + 2.0 * 0.4**3 + 4.0 * 0.4**4)
    assert step.worst_backoff == pytest.approx(7.5)
    assert p.completed == pytest.approx(1 - 0.4**5)


def test_the_saga_is_the_product_over_its_steps() -> None:
    fails = {"book_flight": 0.3, "book_hotel": 0.5, "charge_card": 0.2}
    p = predict(trip, Scenario(fail=fails), samples=1000)
    s = {name: 1 - f**3 for name, f in fails.items()}
    assert p.completed == pytest.approx(math.prod(s.values()))
    assert p.compensated == pytest.approx(1 - math.prod(s.values()))
    assert p.failed == 0.0
    assert p.steps["book_hotel"].reached == pytest.approx(s["book_flight"])
    # a step is undone when it succeeded and a later one failed for good
    assert p.steps["book_flight"].compensated == pytest.approx(
        s["book_flight"] * (1 - s["book_hotel"] * s["charge_card"]))
    assert p.steps["charge_card"].compensated == 0.0


def test_replicas_tried_in_turn() -> None:
    for n in (2, 3):
        p = predict(trip, Scenario(fail={"book_hotel": 0.6}, replicas={"book_hotel": n}), samples=100)
        hotel = p.steps["book_hotel"]
        assert hotel.attempt_failure == pytest.approx(0.6**n)
        assert hotel.success == pytest.approx(1 - 0.6 ** (n * 3))


def test_a_timeout_counts_a_late_call_as_a_failure() -> None:
    latency = LogNormal(0.0, 0.6)
    p = predict(slow, Scenario(fail={"fetch": 0.1}, latency={"fetch": latency}), samples=1000)
    over = 1 - NormalDist(0.0, 0.6).cdf(math.log(1.5))
    fetch = p.steps["fetch"]
    assert fetch.timeout_failure == pytest.approx(over)
    assert fetch.attempt_failure == pytest.approx(1 - 0.9 * (1 - over))
    assert fetch.success == pytest.approx(1 - fetch.attempt_failure**3)
    # the --timeout flag replaces the definition's limit
    p = predict(slow, Scenario(latency={"fetch": Fixed(2.0)}, timeout={"fetch": 3.0}), samples=10)
    assert p.steps["fetch"].attempt_failure == 0.0
    p = predict(slow, Scenario(latency={"fetch": Fixed(2.0)}), samples=10)
    assert p.steps["fetch"].attempt_failure == 1.0


def test_fixed_times_are_predicted_exactly() -> None:
    # every call takes 0.25 s and the first of two attempts always fails: 0.25 + 1 + 0.25
    saga = Saga("fixed-times")
    saga.step(name="a", retry=Retry.fixed(1.0, attempts=2))(lambda ctx: None)
    p = predict(saga, Scenario(latency={"a": Fixed(0.25)}), samples=100)
    assert p.quantile(0.5) == pytest.approx(0.25)
    assert p.cdf(0.25) == 1.0 and p.cdf(0.2) == 0.0


def test_unlimited_attempts() -> None:
    p = predict(trip, Scenario(fail={"book_flight": 0.5},
                               policy={"book_flight": Retry.fixed(2.0, attempts=None)}), samples=100)
    flight = p.steps["book_flight"]
    assert flight.success == pytest.approx(1.0)
    assert flight.expected_attempts == pytest.approx(2.0)
    assert flight.expected_backoff == pytest.approx(2.0)  # sum of 2 * 0.5**i
    assert flight.worst_backoff is None


def test_jitter_and_deadline_are_named_as_ignored() -> None:
    assert [e.name for e in predict(jittery, Scenario(), samples=10).effects] == ["jitter"]
    assert [e.name for e in predict(hurried, Scenario(), samples=10).effects] == ["deadline"]
    assert predict(trip, Scenario(), samples=10).effects == []
    # the nominal delays of a jittered policy are the windows it draws from
    assert nominal_delays(jittery["call"].retry, 5) == [1.0, 2.0]


def test_distributions_from_a_logs_figures() -> None:
    fitted = LogNormal.from_quantiles(0.2, 0.8)
    assert fitted.cdf(0.2) == pytest.approx(0.5)
    assert fitted.cdf(0.8) == pytest.approx(0.95)
    with pytest.raises(ValueError, match="need 0 < p50 <= p95"):
        LogNormal.from_quantiles(0.5, 0.1)
    observed = Empirical([0.3, 0.1, 0.2, 0.2])
    assert observed.cdf(0.2) == 0.75 and observed.exceeds(0.25) == 0.25
    assert observed.mean == pytest.approx(0.2)
    rng = random.Random(1)
    assert {observed.draw(rng) for _ in range(200)} == {0.1, 0.2, 0.3}
    # a timeout's share of failures comes from the observed latencies
    p = predict(slow, Scenario(latency={"fetch": Empirical([1.0, 1.0, 2.0, 3.0])}), samples=10)
    assert p.steps["fetch"].timeout_failure == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least one value"):
        Empirical([])


def test_a_deadline_out_of_reach_is_not_named() -> None:
    # hurried: 5 attempts 1 s apart can pass its 2.5 s deadline; a 60 s deadline they cannot
    relaxed = Saga("relaxed", deadline=60.0)
    relaxed.step(name="call", retry=Retry.fixed(1.0, attempts=5), timeout=10.0)(lambda ctx: None)
    assert predict(relaxed, Scenario(), samples=10).effects == []
    # ... unless unbounded latencies, cut only by a 20 s timeout, could take that long
    unbounded = Scenario(latency={"call": LogNormal(0.0, 1.0)}, timeout={"call": 20.0})
    assert [e.name for e in predict(relaxed, unbounded, samples=10).effects] == ["deadline"]


def test_an_attempt_that_reaches_its_limit_times_out() -> None:
    assert Fixed(2.0).reaches(2.0) == 1.0 and Fixed(2.0).exceeds(2.0) == 0.0
    observed = Empirical([1.0, 2.0, 2.0, 3.0])
    assert observed.reaches(2.0) == 0.75 and observed.exceeds(2.0) == 0.25
    assert (Fixed(2.0).longest, observed.longest, LogNormal(0, 1).longest) == (2.0, 3.0, math.inf)
    # a fixed latency equal to the timeout fails every attempt, as the coordinator counts it
    p = predict(slow, Scenario(latency={"fetch": Fixed(1.5)}), samples=10)
    assert p.steps["fetch"].timeout_failure == 1.0 and p.steps["fetch"].success == 0.0

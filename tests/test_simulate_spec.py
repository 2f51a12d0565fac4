"""Parsing the simulator's settings: good values, and one precise message per bad one."""

from __future__ import annotations

import pytest

from saga import InvalidInput, Retry, Saga
from saga.simulate import Exponential, Fixed, LogNormal, Scenario, Uniform, parse_policy
from tests.fixtures.simulate_sagas import jittery, trip


def test_parses_every_flag() -> None:
    s = Scenario.parse(
        fail=["book_flight=0.25"],
        latency=["book_flight=exp:0.2", "book_hotel=lognormal:-1,0.5", "charge_card=uniform:0.1,0.3"],
        replicas=["book_hotel=3"],
        policy=["book_flight=fixed:2,5", "book_hotel=exponential:0.5,10,4"],
        timeout=["charge_card=1.5"],
    )
    assert s.fail == {"book_flight": 0.25}
    assert s.latency == {"book_flight": Exponential(0.2), "book_hotel": LogNormal(-1, 0.5),
                         "charge_card": Uniform(0.1, 0.3)}
    assert s.replicas == {"book_hotel": 3}
    assert s.timeout == {"charge_card": 1.5}
    flight = s.retry(trip, "book_flight")
    assert flight.attempts == 5 and flight.next_delay(attempt=1, elapsed=0, seed="") == (2.0, None)
    hotel = s.retry(trip, "book_hotel")
    assert hotel.attempts == 4
    assert [hotel.next_delay(attempt=i, elapsed=0, seed="")[0] for i in (1, 2, 3)] == [0.5, 1.0, 2.0]
    # steps not named keep the definition's policy and timeout, never fail, take no time
    assert s.retry(trip, "charge_card") is trip["charge_card"].retry
    assert s.call("charge_card").fail == 0.0
    assert s.call("book_flight").latency == Exponential(0.2)
    assert Scenario().call("x").latency == Fixed(0.0)
    s.check(trip)


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("fail", "book_flight", "--fail 'book_flight': expected STEP=VALUE"),
    ("fail", "=0.5", "--fail '=0.5': expected STEP=VALUE"),
    ("fail", "book_flight=", "--fail 'book_flight=': expected STEP=VALUE"),
    ("fail", "book_flight=often", "--fail 'book_flight=often': P 'often' is not a number"),
    ("fail", "book_flight=1.5", "--fail 'book_flight=1.5': P must be between 0 and 1, got 1.5"),
    ("fail", "book_flight=-0.1", "--fail 'book_flight=-0.1': P must be between 0 and 1, got -0.1"),
    ("fail", "book_flight=nan", "--fail 'book_flight=nan': P must be finite, not nan"),
    ("latency", "a=0.2", "--latency 'a=0.2': expected fixed:SECONDS, exp:MEAN, lognormal:MU,SIGMA "
     "or uniform:A,B"),
    ("latency", "a=gamma:1", "--latency 'a=gamma:1': unknown distribution 'gamma'; expected "
     "fixed:SECONDS, exp:MEAN, lognormal:MU,SIGMA or uniform:A,B"),
    ("latency", "a=fixed:-1", "--latency 'a=fixed:-1': a fixed latency cannot be negative, got -1"),
    ("latency", "a=exp:0", "--latency 'a=exp:0': the mean of exp must be positive, got 0"),
    ("latency", "a=exp:1,2", "--latency 'a=exp:1,2': expected 1 number (MEAN), got 2"),
    ("latency", "a=lognormal:1", "--latency 'a=lognormal:1': expected 2 numbers (MU,SIGMA), got 1"),
    ("latency", "a=lognormal:1,-1", "--latency 'a=lognormal:1,-1': SIGMA of lognormal cannot be "
     "negative, got -1"),
    ("latency", "a=uniform:3,1", "--latency 'a=uniform:3,1': uniform:A,B needs 0 <= A < B, got A=3, "
     "B=1"),
    ("latency", "a=uniform:x,1", "--latency 'a=uniform:x,1': A 'x' is not a number"),
    ("replicas", "a=0", "--replicas 'a=0': N must be a whole number of at least 1, not 0"),
    ("replicas", "a=2.5", "--replicas 'a=2.5': N must be a whole number of at least 1, not 2.5"),
    ("policy", "a=linear:1,2", "--policy 'a=linear:1,2': expected fixed:DELAY,ATTEMPTS or "
     "exponential:INITIAL,MAX,ATTEMPTS"),
    ("policy", "a=fixed:1", "--policy 'a=fixed:1': expected 2 numbers (DELAY,ATTEMPTS), got 1"),
    ("policy", "a=fixed:1,0", "--policy 'a=fixed:1,0': ATTEMPTS must be a whole number of at least "
     "1, not 0"),
    ("policy", "a=fixed:-1,3", "--policy 'a=fixed:-1,3': delay cannot be negative, got -1.0"),
    ("policy", "a=exponential:5,1,3", "--policy 'a=exponential:5,1,3': maximum (1s) cannot be less "
     "than initial (5s)"),
    ("timeout", "a=0", "--timeout 'a=0': SECONDS must be positive, got 0"),
    ("timeout", "a=soon", "--timeout 'a=soon': SECONDS 'soon' is not a number"),
])
def test_each_bad_value_has_one_precise_message(flag: str, value: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Scenario.parse(**{flag: [value]})
    assert str(caught.value) == message


def test_a_step_given_twice_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"^--fail 'a=0.2': step 'a' is given twice$"):
        Scenario.parse(fail=["a=0.1", "a=0.2"])


def test_a_step_the_saga_does_not_have_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        Scenario.parse(timeout=["book_car=2"]).check(trip)
    assert str(caught.value) == ("--timeout: saga 'trip' has no step 'book_car' "
                                 "(its steps: book_flight, book_hotel, charge_card)")


def test_a_simulation_that_could_not_end_is_refused() -> None:
    forever = Scenario(fail={"call": 1.0}, policy={"call": Retry.fixed(1.0, attempts=None)})
    with pytest.raises(InvalidInput, match="can never succeed here and its policy retries without"):
        forever.check(jittery)
    # bounded attempts are fine: the step just fails
    Scenario(fail={"call": 1.0}).check(jittery)


def test_policies_have_no_jitter() -> None:
    policy = parse_policy("exponential:1,8,5")
    delays = [policy.next_delay(attempt=i, elapsed=0, seed=str(i))[0] for i in range(1, 5)]
    assert delays == [1.0, 2.0, 4.0, 8.0]


def test_replicas_are_for_steps_over_a_failover_or_hedge() -> None:
    from saga.adapters import Failover, Function, Hedge

    with pytest.raises(InvalidInput, match="step 'book_flight' does not call a Failover or Hedge"):
        Scenario.parse(replicas=["book_flight=2"]).check(trip)
    Scenario.parse(replicas=["book_hotel=3"]).check(trip)  # a Failover: accepted

    def service(**request: object) -> None:
        return None

    shop = Saga("shop")
    shop.call("stock", Hedge([Function(service, target=f"inv-{i}") for i in range(3)], after=0.05))
    shop.call("pay", Failover([Function(service, target="a"), Function(service, target="b")]))
    assert Scenario().for_saga(shop).replicas == {"stock": 3, "pay": 2}  # as many as the adapter has
    assert Scenario.parse(replicas=["pay=4"]).for_saga(shop).replicas == {"stock": 3, "pay": 4}


def test_a_hedged_step_is_named_as_hedging_where_the_formulas_fall_short() -> None:
    from saga.adapters import Function, Hedge
    from saga.simulate.predict import predict

    def service(**request: object) -> None:
        return None

    shop = Saga("shop")
    shop.call("stock", Hedge([Function(service, target=f"inv-{i}") for i in range(2)], after=0.05))
    names = [e.name for e in predict(shop, Scenario.parse(fail=["stock=0.3"]), samples=200).effects]
    assert "hedging" in names

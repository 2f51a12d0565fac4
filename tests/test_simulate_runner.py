"""The runner: real definitions on the real coordinator, simulated work, reproducible figures."""

from __future__ import annotations

import json

import pytest

from saga import InvalidInput, Saga
from saga.cli.command import load_targets
from saga.simulate import Fixed, Scenario, build_report, simulate
from tests.fixtures.simulate_sagas import hurried, slow, trip


def _target(name: str) -> Saga:
    (saga,) = [s for s in load_targets(["tests.fixtures.simulate_sagas"]) if s.name == name]
    return saga


def test_runs_the_definitions_from_a_target_without_calling_their_functions() -> None:
    saga = _target("trip")
    m = simulate(saga, Scenario.parse(fail=["book_hotel=1"]), runs=5, seed=1)
    for run in m.runs:
        assert run.status == "compensated"
        # the definition's policy: three attempts one second apart, then the flight is undone
        assert run.steps["book_hotel"].attempts == 3
        assert run.steps["book_hotel"].backoff == pytest.approx(2.0)
        assert run.steps["book_flight"].compensated
        assert "charge_card" not in run.steps
        assert run.duration == pytest.approx(2.0)


def test_policy_and_timeout_flags_replace_the_definitions_own() -> None:
    scenario = Scenario.parse(fail=["book_hotel=1"], policy=["book_hotel=exponential:0.5,10,4"])
    (run,) = simulate(trip, scenario, runs=1, seed=1).runs
    assert run.steps["book_hotel"].attempts == 4
    assert run.steps["book_hotel"].backoff == pytest.approx(0.5 + 1 + 2)
    # a call of 2 s against the definition's 1.5 s limit is cut at the limit, every time
    (run,) = simulate(slow, Scenario(latency={"fetch": Fixed(2.0)}), runs=1, seed=1).runs
    fetch = run.steps["fetch"]
    assert (run.status, fetch.attempts, fetch.timeouts) == ("compensated", 3, 3)
    assert fetch.duration == pytest.approx(3 * 1.5 + 2 * 0.5)
    # a longer --timeout lets it through
    scenario = Scenario.parse(latency=["fetch=fixed:2"], timeout=["fetch=2.5"])
    (run,) = simulate(slow, scenario, runs=1, seed=1).runs
    assert run.status == "completed" and run.steps["fetch"].timeouts == 0
    assert run.duration == pytest.approx(2.0)


def test_the_deadline_stops_retries() -> None:
    (run,) = simulate(hurried, Scenario(fail={"call": 1.0}), runs=1, seed=1).runs
    # attempts at 0, 1 and 2 s; the next would start at 3 s, after the 2.5 s deadline
    assert run.status == "compensated"
    assert run.steps["call"].attempts == 3


def test_the_same_seed_gives_the_same_output() -> None:
    scenario = Scenario.parse(fail=["book_flight=0.3", "book_hotel=0.4"],
                              latency=["book_flight=lognormal:-1,0.8", "charge_card=exp:0.3"],
                              replicas=["book_hotel=2"])
    first = build_report(simulate(trip, scenario, runs=150, seed=42))
    again = build_report(simulate(trip, scenario, runs=150, seed=42))
    other = build_report(simulate(trip, scenario, runs=150, seed=43))
    assert json.dumps(first.to_json()) == json.dumps(again.to_json())
    assert first.table().split("\n", 1)[1] == again.table().split("\n", 1)[1]
    assert json.dumps(first.to_json()) != json.dumps(other.to_json())


def test_json_holds_the_contracted_keys() -> None:
    report = build_report(simulate(trip, Scenario.parse(fail=["book_hotel=0.3"]), runs=50, seed=7))
    out = json.loads(json.dumps(report.to_json()))
    assert set(out) == {"runs", "seed", "saga", "steps"}
    assert (out["runs"], out["seed"]) == (50, 7)
    for rate in ("completed", "compensated", "failed"):
        low, high = out["saga"]["measured"][rate]["ci"]
        assert low <= out["saga"]["measured"][rate]["value"] <= high
        assert isinstance(out["saga"]["predicted"][rate], float)
    for q in ("p50", "p95", "p99"):
        assert "ci" in out["saga"]["measured"][q] and q in out["saga"]["predicted"]
    assert set(out["steps"]) == {"book_flight", "book_hotel", "charge_card"}
    hotel = out["steps"]["book_hotel"]
    assert set(hotel) >= {"measured", "predicted"}
    assert hotel["predicted"]["completed"] == pytest.approx(1 - 0.3**3)
    for key in ("completed", "failed", "compensated", "attempts", "backoff", "p50", "p95", "p99"):
        assert "ci" in hotel["measured"][key], key
    completed = sum(r.status == "completed" for r in report.measurements.runs)
    assert out["saga"]["measured"]["completed"]["value"] == completed / 50


@pytest.mark.parametrize(("runs", "seed", "message"), [
    (0, 1, "runs must be a whole number of at least 1, got 0"),
    (True, 1, "runs must be a whole number of at least 1, got True"),
    (10, "x", "seed must be a whole number, got 'x'"),
])
def test_bad_runs_or_seed_are_refused(runs: object, seed: object, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        simulate(trip, Scenario(), runs=runs, seed=seed)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_an_unknown_step_is_refused_before_anything_runs() -> None:
    with pytest.raises(InvalidInput, match="has no step 'nope'"):
        simulate(trip, Scenario.parse(fail=["nope=0.5"]), runs=10)


def test_json_stays_json_when_nothing_completes() -> None:
    report = build_report(simulate(trip, Scenario(fail={"book_hotel": 1.0}), runs=5, seed=1),
                          samples=100)

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    out = json.loads(json.dumps(report.to_json()), parse_constant=refuse)
    assert out["saga"]["measured"]["p50"] == {"value": None, "ci": [None, None], "n": 0}
    assert out["saga"]["predicted"]["p50"] is None
    assert out["saga"]["measured"]["compensated"]["value"] == 1.0
    assert "step book_hotel" in report.table()

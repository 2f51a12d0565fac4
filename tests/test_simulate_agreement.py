"""Measured against predicted: the real coordinator's figures fall inside their intervals
around the formulas as often as 95% intervals should, and a wrong prediction is caught."""

from __future__ import annotations

import pytest

from saga import Saga
from saga.simulate import LogNormal, Report, Scenario, build_report, predict, simulate, summarise
from saga.simulate.report import inside
from tests.fixtures.simulate_sagas import exponential, hurried, jittery, slow, trip

RUNS = 200
SEEDS = (1, 2, 3)

CASES: list[tuple[str, Saga, Scenario]] = [
    ("retries only", trip, Scenario.parse(
        fail=["book_flight=0.3", "book_hotel=0.5", "charge_card=0.2"],
        latency=["book_flight=exp:0.2", "charge_card=uniform:0.1,0.4"])),
    ("exponential backoff", exponential, Scenario.parse(fail=["call=0.45"])),
    ("two replicas", trip, Scenario.parse(
        fail=["book_hotel=0.7", "charge_card=0.3"], replicas=["book_hotel=2"],
        latency=["book_hotel=exp:0.1"])),
    ("three replicas", trip, Scenario.parse(
        fail=["book_hotel=0.8"], replicas=["book_hotel=3"], policy=["book_hotel=fixed:0.5,2"])),
    ("a timeout cutting a lognormal latency", slow, Scenario(
        fail={"fetch": 0.1}, latency={"fetch": LogNormal(0.0, 0.6)})),
]


@pytest.mark.parametrize(("label", "saga", "scenario"), CASES, ids=[c[0] for c in CASES])
def test_measured_figures_fall_inside_their_intervals(label: str, saga: Saga,
                                                      scenario: Scenario) -> None:
    checked = inside_count = 0
    outside: list[str] = []
    for seed in SEEDS:
        report = build_report(simulate(saga, scenario, runs=RUNS, seed=seed), samples=20_000)
        assert report.prediction.effects == []  # nothing here that the formulas ignore
        for path, figure, predicted in report.comparisons():
            checked += 1
            if inside(figure, predicted):
                inside_count += 1
            else:
                outside.append(f"seed {seed} {path}: {figure.value} {figure.ci} vs {predicted}")
    # 95% intervals: about 1 in 20 falls outside by chance; far more means the model is wrong
    assert checked >= 30
    assert inside_count >= 0.88 * checked, outside


def test_a_wrong_prediction_is_caught() -> None:
    truth = Scenario(fail={"book_flight": 0.45, "book_hotel": 0.3})
    claimed = Scenario(fail={"book_flight": 0.3, "book_hotel": 0.3})
    m = simulate(trip, truth, runs=RUNS, seed=5)
    right = build_report(m)
    wrong = Report(m, summarise(m), predict(trip, claimed, samples=20_000))
    assert "steps.book_flight.attempts" not in {d.figure for d in right.disagreements()}
    caught = {d.figure: d for d in wrong.disagreements()}
    assert "steps.book_flight.attempts" in caught
    assert "steps.book_flight.backoff" in caught
    # nothing the formulas ignore applies: the report says it is chance (or a defect)
    assert caught["steps.book_flight.attempts"].reasons == []
    assert caught["steps.book_flight.attempts"].to_json()["reasons"][0]["effect"] == "chance"
    assert "outside" in wrong.table()


def test_jitter_is_named_when_backoffs_disagree() -> None:
    # the default policy draws each delay from [0, d]: on average half what the formula uses
    report = build_report(simulate(jittery, Scenario(fail={"call": 0.5}), runs=RUNS, seed=1))
    found = {d.figure: d for d in report.disagreements()}
    assert "steps.call.backoff" in found
    assert [e.name for e in found["steps.call.backoff"].reasons] == ["jitter"]
    assert found["steps.call.backoff"].measured < found["steps.call.backoff"].predicted
    # jitter does not change how often the step succeeds
    assert "steps.call.completed" not in found


def test_a_deadline_is_named_when_success_disagrees() -> None:
    # 2.5 s leave room for three of the five attempts the formula counts
    report = build_report(simulate(hurried, Scenario(fail={"call": 0.5}), runs=RUNS, seed=1))
    found = {d.figure: d for d in report.disagreements()}
    assert "saga.completed" in found
    assert found["saga.completed"].measured < found["saga.completed"].predicted
    assert [e.name for e in found["saga.completed"].reasons] == ["deadline"]
    assert "deadline" in report.table()

"""Confidence intervals: known values, and coverage checked by drawing from known distributions."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from saga.simulate import mean_interval, percentile, percentile_interval, wilson


def test_wilson_matches_the_textbook_values() -> None:
    low, high = wilson(0, 10)
    assert low == 0.0 and abs(high - 0.2775) < 1e-4
    low, high = wilson(5, 10)
    assert abs(low - 0.2366) < 1e-4 and abs(high - 0.7634) < 1e-4
    low, high = wilson(10, 10)
    assert abs(low - 0.7225) < 1e-4 and high == 1.0


@given(st.integers(min_value=1, max_value=5000), st.data())
def test_wilson_holds_the_observed_share(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=n))
    low, high = wilson(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_covers_the_true_rate_about_95_percent_of_the_time() -> None:
    rng = random.Random(7)
    p, n, trials = 0.3, 200, 400
    covered = 0
    for _ in range(trials):
        k = sum(rng.random() < p for _ in range(n))
        low, high = wilson(k, n)
        covered += low <= p <= high
    assert 0.92 * trials <= covered <= 0.985 * trials


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0


def test_percentile_intervals_cover_the_true_quantile() -> None:
    rng = random.Random(11)
    trials, n = 300, 300
    for q in (0.5, 0.95):
        covered = 0
        for _ in range(trials):
            ordered = sorted(rng.random() for _ in range(n))  # uniform: the q quantile is q
            low, high = percentile_interval(ordered, q)
            covered += (low is None or low <= q) and (high is None or q <= high)
        assert covered >= 0.92 * trials, (q, covered)


def test_too_few_values_leave_a_side_unbounded() -> None:
    ordered = sorted(random.Random(3).random() for _ in range(100))
    low, high = percentile_interval(ordered, 0.99)
    assert low is not None and high is None
    assert percentile_interval([], 0.5) == (None, None)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=300),
       st.sampled_from([0.5, 0.95, 0.99]))
def test_a_percentile_lies_inside_its_interval(values: list[float], q: float) -> None:
    ordered = sorted(values)
    low, high = percentile_interval(ordered, q)
    p = percentile(ordered, q)
    assert (low is None or low <= p) and (high is None or p <= high)


def test_mean_interval_holds_the_mean() -> None:
    low, high = mean_interval([1.0, 2.0, 3.0, 4.0])
    assert low < 2.5 < high
    assert mean_interval([2.0]) == (2.0, 2.0)

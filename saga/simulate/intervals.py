"""Confidence intervals: Wilson for proportions, order statistics for percentiles,
the normal approximation for means."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist, fmean, stdev

__all__ = ["mean_interval", "percentile", "percentile_interval", "wilson"]

CONFIDENCE = 0.95


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval for a proportion of ``successes`` out of ``n``.

    Unlike ``p ± z·sqrt(p(1-p)/n)`` it stays inside [0, 1] and does not
    collapse to a point when no (or every) run succeeded.
    """
    if n <= 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return low, high


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """An interval for the mean by the normal approximation (the values' own spread)."""
    if not values:
        return math.nan, math.nan
    m = fmean(values)
    if len(values) < 2:
        return m, m
    half = _z(confidence) * stdev(values, m) / math.sqrt(len(values))
    return m - half, m + half


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 < q < 1) of sorted values by the nearest rank: the smallest
    value with at least a share ``q`` of the values at or below it."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q * len(ordered) - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def _binomial_cdf(n: int, q: float) -> list[float]:
    """``P(B <= k)`` for ``B ~ Binomial(n, q)``, k = 0..n (log space, so large ``n`` is fine)."""
    log_q, log_r = math.log(q), math.log1p(-q)
    lg_n = math.lgamma(n + 1)
    out, total = [], 0.0
    for k in range(n + 1):
        total += math.exp(lg_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_q
                          + (n - k) * log_r)
        out.append(min(total, 1.0))
    return out


def percentile_interval(
    ordered: Sequence[float], q: float, confidence: float = CONFIDENCE
) -> tuple[float | None, float | None]:
    """A distribution-free interval for the ``q`` quantile from sorted values.

    The bounds are order statistics ``X(l)`` and ``X(u)`` chosen so that the
    number of values below the true quantile, a binomial count, falls
    between them with at least ``confidence``. ``None`` on a side means too
    few values to bound it there (e.g. a p99 from 100 runs has no upper bound).
    """
    n = len(ordered)
    if n == 0:
        return None, None
    tail = (1 - confidence) / 2
    cdf = _binomial_cdf(n, q)
    # lower: the largest l with P(B <= l - 1) <= tail, so X(l) <= quantile with prob >= 1 - tail
    low_rank = 0
    for rank in range(1, n + 1):
        if cdf[rank - 1] <= tail:
            low_rank = rank
        else:
            break
    # upper: the smallest u with P(B >= u) <= tail
    high_rank = None
    for rank in range(1, n + 1):
        if 1.0 - cdf[rank - 1] <= tail:
            high_rank = rank
            break
    low = ordered[low_rank - 1] if low_rank >= 1 else None
    high = ordered[high_rank - 1] if high_rank is not None else None
    return low, high

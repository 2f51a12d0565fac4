"""Latency distributions for simulated calls: fixed, exponential, lognormal, uniform.

Each distribution draws from a :class:`random.Random` it is given (so a
simulation seeds every draw itself) and knows its own CDF, which the
predictions use for the chance that a latency passes a timeout.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from math import fsum
from statistics import NormalDist

from saga.text import count

__all__ = ["LONGEST", "Distribution", "Empirical", "Exponential", "Fixed", "LogNormal", "Uniform"]

_Z95 = NormalDist().inv_cdf(0.95)

LONGEST = 365 * 86_400.0
"""The longest latency a simulated call can take, in seconds: a year."""

_TAIL = 1e-6
"""The largest chance of a draw longer than :data:`LONGEST` that a distribution with no upper
bound may have; such rare draws are cut to :data:`LONGEST`, so that no draw can overflow."""

_A_YEAR = f"a year ({LONGEST:,.0f} seconds)"
_LOG_LONGEST = math.log(LONGEST)
_LONGEST_MEAN = LONGEST / -math.log(_TAIL)  # an exponential's mean whose tail past LONGEST is _TAIL


def _within(value: float, what: str) -> None:
    """Refuse a latency that is not finite, or longer than :data:`LONGEST`."""
    if not math.isfinite(value) or value > LONGEST:
        raise ValueError(f"{what} must be at most {_A_YEAR}, not {value:g}")


class Distribution(ABC):
    """A distribution of non-negative latencies, in seconds."""

    @abstractmethod
    def draw(self, rng: random.Random) -> float:
        """One latency drawn from ``rng``."""

    @abstractmethod
    def cdf(self, x: float) -> float:
        """``P(L <= x)``."""

    @property
    @abstractmethod
    def mean(self) -> float:
        """The expected latency."""

    @abstractmethod
    def spec(self) -> str:
        """How the distribution is written on the command line (``exp:0.2``), or, for one
        that cannot be, a short description."""

    def exceeds(self, limit: float) -> float:
        """``P(L > limit)``."""
        return 1.0 - self.cdf(limit)

    @property
    def longest(self) -> float:
        """The longest latency it can draw (``inf`` when it has no upper bound)."""
        return math.inf

    def reaches(self, limit: float) -> float:
        """``P(L >= limit)``: the chance a call times out under a limit of ``limit`` seconds
        (an attempt that returns at its limit counts as timed out)."""
        return self.exceeds(limit)


@dataclass(frozen=True, slots=True)
class Fixed(Distribution):
    """Always ``value`` seconds."""

    value: float

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError(f"a fixed latency cannot be negative, got {self.value:g}")
        _within(self.value, "a fixed latency")

    def draw(self, rng: random.Random) -> float:
        return self.value

    def cdf(self, x: float) -> float:
        return 1.0 if x >= self.value else 0.0

    @property
    def mean(self) -> float:
        return self.value

    @property
    def longest(self) -> float:
        return self.value

    def reaches(self, limit: float) -> float:
        return 1.0 if self.value >= limit else 0.0

    def spec(self) -> str:
        return f"fixed:{self.value:g}"


@dataclass(frozen=True, slots=True)
class Exponential(Distribution):
    """Exponential with mean ``mean_value`` seconds: at most :data:`LONGEST` / 14, so that a
    draw passes :data:`LONGEST` with a chance of at most one in a million (it is cut to it)."""

    mean_value: float

    def __post_init__(self) -> None:
        if not self.mean_value > 0:
            raise ValueError(f"the mean of exp must be positive, got {self.mean_value:g}")
        if not self.mean_value <= _LONGEST_MEAN:
            raise ValueError(f"the mean of exp must be at most {_LONGEST_MEAN:g} seconds, not "
                             f"{self.mean_value:g} (draws longer than a year would be too common)")

    def draw(self, rng: random.Random) -> float:
        return min(rng.expovariate(1.0 / self.mean_value), LONGEST)

    def cdf(self, x: float) -> float:
        return 0.0 if x <= 0 else 1.0 - math.exp(-x / self.mean_value)

    @property
    def mean(self) -> float:
        return self.mean_value

    def spec(self) -> str:
        return f"exp:{self.mean_value:g}"


@dataclass(frozen=True, slots=True)
class LogNormal(Distribution):
    """``exp(N(mu, sigma))`` seconds: ``mu`` and ``sigma`` of the latency's logarithm.

    Its mean must be at most :data:`LONGEST`, and a draw may pass :data:`LONGEST`
    with a chance of at most one in a million (such a draw is cut to it).
    """

    mu: float
    sigma: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mu) and math.isfinite(self.sigma)):
            raise ValueError("MU and SIGMA of lognormal must be finite")
        if self.sigma < 0:
            raise ValueError(f"SIGMA of lognormal cannot be negative, got {self.sigma:g}")
        if self.mu + self.sigma * self.sigma / 2 > _LOG_LONGEST:
            raise ValueError(f"lognormal:{self.mu:g},{self.sigma:g} has a mean longer than "
                             f"{_A_YEAR}: MU + SIGMA²/2 must be at most "
                             f"{_LOG_LONGEST:.4g}")
        if self.exceeds(LONGEST) > _TAIL:
            raise ValueError(f"lognormal:{self.mu:g},{self.sigma:g} draws latencies longer than "
                             f"{_A_YEAR} too often: lower MU or SIGMA")

    def draw(self, rng: random.Random) -> float:
        # lognormvariate's own draw, cut before exp can overflow
        return math.exp(min(rng.normalvariate(self.mu, self.sigma), _LOG_LONGEST))

    def cdf(self, x: float) -> float:
        if x <= 0:
            return 0.0
        if self.sigma == 0:
            return 1.0 if math.log(x) >= self.mu else 0.0
        return NormalDist(self.mu, self.sigma).cdf(math.log(x))

    @property
    def mean(self) -> float:
        return math.exp(self.mu + self.sigma**2 / 2)

    @classmethod
    def from_quantiles(cls, p50: float, p95: float) -> LogNormal:
        """The lognormal whose median is ``p50`` and whose 95th percentile is ``p95``
        (e.g. attempt durations from a log's statistics)."""
        if not 0 < p50 <= p95:
            raise ValueError(f"need 0 < p50 <= p95, got p50={p50:g}, p95={p95:g}")
        mu = math.log(p50)
        return cls(mu, (math.log(p95) - mu) / _Z95)

    def spec(self) -> str:
        return f"lognormal:{self.mu:g},{self.sigma:g}"


@dataclass(frozen=True, slots=True)
class Uniform(Distribution):
    """Uniform between ``low`` and ``high`` seconds."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 <= self.low < self.high:
            raise ValueError(f"uniform:A,B needs 0 <= A < B, got A={self.low:g}, B={self.high:g}")
        _within(self.high, "B of uniform")

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)

    def cdf(self, x: float) -> float:
        if x >= self.high:
            return 1.0
        if x < self.low:
            return 0.0
        return (x - self.low) / (self.high - self.low)

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    @property
    def longest(self) -> float:
        return self.high

    def spec(self) -> str:
        return f"uniform:{self.low:g},{self.high:g}"


class Empirical(Distribution):
    """Latencies drawn from observed ones (each equally likely), e.g. a log's attempt durations."""

    __slots__ = ("values",)

    def __init__(self, values: list[float]) -> None:
        if not values:
            raise ValueError("an empirical distribution needs at least one value")
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError("latencies must be finite and non-negative")
        self.values = sorted(values)

    def draw(self, rng: random.Random) -> float:
        return self.values[int(rng.random() * len(self.values))]

    def cdf(self, x: float) -> float:
        return bisect_right(self.values, x) / len(self.values)

    @property
    def mean(self) -> float:
        return fsum(self.values) / len(self.values)

    @property
    def longest(self) -> float:
        return self.values[-1]

    def reaches(self, limit: float) -> float:
        return 1.0 - bisect_left(self.values, limit) / len(self.values)

    def spec(self) -> str:
        return f"empirical ({count(len(self.values), 'value')})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Empirical) and other.values == self.values

    def __hash__(self) -> int:
        return hash(tuple(self.values))

    def __repr__(self) -> str:
        return f"Empirical({count(len(self.values), 'value')}, mean {self.mean:.4g}s)"

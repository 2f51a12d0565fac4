"""Latency distributions for simulated calls: fixed, exponential, lognormal, uniform.

Each distribution draws from a :class:`random.Random` it is given (so a
simulation seeds every draw itself) and knows its own CDF, which the
predictions use for the chance that a latency passes a timeout.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from statistics import NormalDist

__all__ = ["Distribution", "Exponential", "Fixed", "LogNormal", "Uniform"]


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
        """The text that parses back into this distribution (``exp:0.2``)."""

    def exceeds(self, limit: float) -> float:
        """``P(L > limit)``: the chance a call runs past a timeout of ``limit`` seconds."""
        return 1.0 - self.cdf(limit)


@dataclass(frozen=True, slots=True)
class Fixed(Distribution):
    """Always ``value`` seconds."""

    value: float

    def draw(self, rng: random.Random) -> float:
        return self.value

    def cdf(self, x: float) -> float:
        return 1.0 if x >= self.value else 0.0

    @property
    def mean(self) -> float:
        return self.value

    def spec(self) -> str:
        return f"fixed:{self.value:g}"


@dataclass(frozen=True, slots=True)
class Exponential(Distribution):
    """Exponential with mean ``mean_value`` seconds."""

    mean_value: float

    def draw(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean_value)

    def cdf(self, x: float) -> float:
        return 0.0 if x <= 0 else 1.0 - math.exp(-x / self.mean_value)

    @property
    def mean(self) -> float:
        return self.mean_value

    def spec(self) -> str:
        return f"exp:{self.mean_value:g}"


@dataclass(frozen=True, slots=True)
class LogNormal(Distribution):
    """``exp(N(mu, sigma))`` seconds: ``mu`` and ``sigma`` of the latency's logarithm."""

    mu: float
    sigma: float

    def draw(self, rng: random.Random) -> float:
        return rng.lognormvariate(self.mu, self.sigma)

    def cdf(self, x: float) -> float:
        if x <= 0:
            return 0.0
        if self.sigma == 0:
            return 1.0 if math.log(x) >= self.mu else 0.0
        return NormalDist(self.mu, self.sigma).cdf(math.log(x))

    @property
    def mean(self) -> float:
        return math.exp(self.mu + self.sigma**2 / 2)

    def spec(self) -> str:
        return f"lognormal:{self.mu:g},{self.sigma:g}"


@dataclass(frozen=True, slots=True)
class Uniform(Distribution):
    """Uniform between ``low`` and ``high`` seconds."""

    low: float
    high: float

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

    def spec(self) -> str:
        return f"uniform:{self.low:g},{self.high:g}"

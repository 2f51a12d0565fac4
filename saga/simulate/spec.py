"""Parsing a simulation's settings: ``STEP=P``, ``STEP=DIST``, ``STEP=N``, ``STEP=SPEC``.

Every bad value is refused with one :class:`~saga.InvalidInput` that names
the flag, repeats the value and says what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from saga.definition import Saga
from saga.errors import InvalidInput, PolicyError
from saga.policies import Retry
from saga.simulate.distributions import LONGEST, Distribution, Exponential, Fixed, LogNormal, Uniform
from saga.simulate.model import CallModel
from saga.text import count

__all__ = [
    "Scenario",
    "parse_distribution",
    "parse_policy",
]

T = TypeVar("T")

DISTRIBUTIONS = "fixed:SECONDS, exp:MEAN, lognormal:MU,SIGMA or uniform:A,B"
POLICIES = "fixed:DELAY,ATTEMPTS or exponential:INITIAL,MAX,ATTEMPTS"


class _Bad(ValueError):
    """A value that does not parse; the message says what was expected."""


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _Bad(f"{what} {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise _Bad(f"{what} must be finite, not {text.strip()}")
    return value


def _args(text: str, names: tuple[str, ...]) -> list[float]:
    parts = text.split(",")
    if len(parts) != len(names):
        raise _Bad(f"expected {count(len(names), 'number')} "
                   f"({','.join(names)}), got {len(parts)}")
    return [_number(p, n) for p, n in zip(parts, names, strict=True)]


def _whole(value: float, what: str) -> int:
    if value != int(value) or value < 1:
        raise _Bad(f"{what} must be a whole number of at least 1, not {value:g}")
    return int(value)


def parse_distribution(text: str) -> Distribution:
    """A latency distribution from ``fixed:0.2``, ``exp:0.2``, ``lognormal:-2,0.5`` or
    ``uniform:0.1,0.3`` (seconds); raises :class:`ValueError` saying what is wrong, also for
    parameters whose draws could be longer than the simulation can represent."""
    kind, sep, rest = text.partition(":")
    if not sep:
        raise _Bad(f"expected {DISTRIBUTIONS}")
    kind = kind.strip().lower()
    if kind == "fixed":
        (value,) = _args(rest, ("SECONDS",))
        return Fixed(value)
    if kind in ("exp", "exponential"):
        (mean,) = _args(rest, ("MEAN",))
        return Exponential(mean)
    if kind == "lognormal":
        mu, sigma = _args(rest, ("MU", "SIGMA"))
        return LogNormal(mu, sigma)
    if kind == "uniform":
        low, high = _args(rest, ("A", "B"))
        return Uniform(low, high)
    raise _Bad(f"unknown distribution {kind!r}; expected {DISTRIBUTIONS}")


def parse_policy(text: str) -> Retry:
    """A retry policy from ``fixed:DELAY,ATTEMPTS`` or ``exponential:INITIAL,MAX,ATTEMPTS``
    (no jitter); raises :class:`ValueError` saying what is wrong."""
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    try:
        if sep and kind == "fixed":
            delay, attempts = _args(rest, ("DELAY", "ATTEMPTS"))
            return Retry.fixed(delay, attempts=_whole(attempts, "ATTEMPTS"))
        if sep and kind == "exponential":
            initial, maximum, attempts = _args(rest, ("INITIAL", "MAX", "ATTEMPTS"))
            return Retry.exponential(initial=initial, maximum=maximum,
                                     attempts=_whole(attempts, "ATTEMPTS"))
    except PolicyError as e:
        raise _Bad(str(e)) from None
    raise _Bad(f"expected {POLICIES}")


def _probability(text: str) -> float:
    value = _number(text, "P")
    if not 0.0 <= value <= 1.0:
        raise _Bad(f"P must be between 0 and 1, got {value:g}")
    return value


def _replicas(text: str) -> int:
    return _whole(_number(text, "N"), "N")


def _seconds(text: str) -> float:
    value = _number(text, "SECONDS")
    if value <= 0:
        raise _Bad(f"SECONDS must be positive, got {value:g}")
    if value > LONGEST:
        raise _Bad(f"SECONDS must be at most a year ({LONGEST:,.0f}), got {value:g}")
    return value


def _pairs(flag: str, items: Iterable[str], value: Callable[[str], T]) -> dict[str, T]:
    out: dict[str, T] = {}
    for item in items:
        step, sep, text = item.partition("=")
        step = step.strip()
        if not sep or not step or not text.strip():
            raise InvalidInput(f"{flag} {item!r}: expected STEP=VALUE")
        if step in out:
            raise InvalidInput(f"{flag} {item!r}: step {step!r} is given twice")
        try:
            out[step] = value(text.strip())
        except ValueError as e:
            raise InvalidInput(f"{flag} {item!r}: {e}") from None
    return out


@dataclass(frozen=True, slots=True)
class Scenario:
    """What a simulation changes, per step name.

    ``fail``: the chance each call fails (a retryable error); ``latency``: how
    long each call takes; ``replicas``: how many replicas an attempt tries in
    turn, each with its own draws, for a step declared with ``Saga.call`` over a
    ``Failover`` or ``Hedge`` (by default as many as the adapter has; a hedge
    is modelled as replicas tried in turn, and the report names hedging when
    that disagrees); ``policy`` and ``timeout`` replace the definition's retry
    policy and timeout. Steps not named keep the definition's policy and
    timeout, never fail and take no time.
    """

    fail: Mapping[str, float] = field(default_factory=dict)
    latency: Mapping[str, Distribution] = field(default_factory=dict)
    replicas: Mapping[str, int] = field(default_factory=dict)
    policy: Mapping[str, Retry] = field(default_factory=dict)
    timeout: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def parse(
        cls,
        *,
        fail: Iterable[str] = (),
        latency: Iterable[str] = (),
        replicas: Iterable[str] = (),
        policy: Iterable[str] = (),
        timeout: Iterable[str] = (),
    ) -> Scenario:
        """Parse the command line's ``--fail``, ``--latency``, ``--replicas``, ``--policy``
        and ``--timeout`` values; raises :class:`~saga.InvalidInput` on the first bad one."""
        return cls(
            fail=_pairs("--fail", fail, _probability),
            latency=_pairs("--latency", latency, parse_distribution),
            replicas=_pairs("--replicas", replicas, _replicas),
            policy=_pairs("--policy", policy, parse_policy),
            timeout=_pairs("--timeout", timeout, _seconds),
        )

    def for_saga(self, saga: Saga) -> Scenario:
        """This scenario with each redundant step's replicas defaulting to its adapter's count."""
        replicas = {s.name: len(r) for s in saga.steps if (r := _replicas_of(s)) is not None}
        return replace(self, replicas={**replicas, **self.replicas})

    def check(self, saga: Saga) -> None:
        """Raise :class:`~saga.InvalidInput` if a setting names a step ``saga`` does not have,
        or gives replicas to a step that has none."""
        steps = [s.name for s in saga.steps]
        for name in self.replicas:
            if name in steps and _replicas_of(saga[name]) is None:
                raise InvalidInput(
                    f"--replicas: step {name!r} does not call a Failover or Hedge adapter "
                    "(declare it with Saga.call(name, Failover([...])) to simulate its replicas)"
                )
        for flag, mapping in (("--fail", self.fail), ("--latency", self.latency),
                              ("--replicas", self.replicas), ("--policy", self.policy),
                              ("--timeout", self.timeout)):
            for name in mapping:
                if name not in steps:
                    raise InvalidInput(
                        f"{flag}: saga {saga.name!r} has no step {name!r} "
                        f"(its steps: {', '.join(steps)})"
                    )
        for s in saga.steps:
            retry = self.retry(saga, s.name)
            if (retry.attempts is None and retry.max_elapsed is None and saga.deadline is None
                    and self.call(s.name).never_succeeds(self.step_timeout(saga, s.name))):
                raise InvalidInput(
                    f"step {s.name!r} can never succeed here and its policy retries without "
                    "limit: the simulation would not end"
                )

    def call(self, step: str) -> CallModel:
        """The simulated work of ``step``: its failure rate, latency and replicas."""
        return CallModel(
            fail=self.fail.get(step, 0.0),
            latency=self.latency.get(step, Fixed(0.0)),
            replicas=self.replicas.get(step, 1),
        )

    def retry(self, saga: Saga, step: str) -> Retry:
        """The retry policy ``step`` runs with in this scenario."""
        return self.policy.get(step, saga[step].retry)

    def step_timeout(self, saga: Saga, step: str) -> float | None:
        """The timeout ``step`` runs with in this scenario."""
        return self.timeout.get(step, saga[step].timeout)


def _replicas_of(step: Any) -> tuple[object, ...] | None:
    """The replicas of a step declared over a ``Failover`` or ``Hedge``, else ``None``."""
    replicas = getattr(getattr(step, "adapter", None), "replicas", None)
    return tuple(replicas) if isinstance(replicas, tuple | list) else None

"""Retry policies: small validated values built on tenacity's strategies.

A :class:`Retry` answers one question, purely: after attempt *n* of a step
failed at time *t*, when (if ever) may attempt *n + 1* start?  The wait comes
from tenacity's wait strategies and the limit from its stop strategies; the
coordinator records the answer as an absolute time in the log, so a restarted
coordinator never retries early and never re-rolls the jitter.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import tenacity
from tenacity import RetryCallState
from tenacity.wait import wait_base

from saga.errors import PermanentError, PolicyError
from saga.text import count

__all__ = ["LONGEST", "Retry", "seconds"]

LONGEST = timedelta(days=365_250)
"""The longest delay, timeout, deadline or ``max_elapsed`` a saga may have: 1000 years.

Every such duration is added to the present to make a time the log records;
a longer one would pass the last date a :class:`~datetime.datetime` can hold
(or be infinite), and fail only when the saga first needed it."""

_LONGEST_S = LONGEST.total_seconds()


def seconds(value: float | timedelta | None, *, what: str) -> float | None:
    """Normalise a duration given as seconds or ``timedelta``; reject negatives, NaN and
    anything longer than :data:`LONGEST` (infinity included) with a
    :class:`~saga.PolicyError`."""
    if value is None:
        return None
    number = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(number, int | float) and not number > 0:
        raise PolicyError(f"{what} must be positive, not {number!r}")
    return _non_negative(number, what=what)


class _SeededFullJitter(wait_base):
    """Full jitter over another wait, drawn from a seed instead of the global RNG.

    tenacity's ``wait_random_exponential`` draws ``uniform(0, window)`` from the
    module-level RNG; this draws the same distribution from a generator seeded
    by the step's idempotency key and attempt, so the decision is a pure
    function of its inputs (replays and simulations reproduce it).
    """

    def __init__(self, window: wait_base) -> None:
        self.window = window

    def __call__(self, retry_state: RetryCallState) -> float:
        high = self.window(retry_state)
        seed = retry_state.kwargs.get("seed", "")
        digest = hashlib.blake2b(
            f"{seed}:{retry_state.attempt_number}".encode(), digest_size=8
        ).digest()
        return random.Random(int.from_bytes(digest, "big")).uniform(0.0, high)


@dataclass(frozen=True, slots=True)
class Retry:
    """How often, and how far apart, a step (or compensation) is attempted.

    Build one with :meth:`fixed`, :meth:`exponential` or :meth:`none`.
    ``attempts`` counts every attempt, the first included (``None``: no limit);
    ``max_elapsed`` bounds the time from the first attempt's start to the
    start of any later attempt. ``retry_on`` limits retries to these exception
    types; ``give_up_on`` (and :class:`~saga.PermanentError`) never retry.
    """

    wait: wait_base = field(repr=False, compare=False)
    attempts: int | None
    max_elapsed: float | None = None
    retry_on: tuple[type[BaseException], ...] | None = None
    give_up_on: tuple[type[BaseException], ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        # Built directly rather than by a constructor: the limits are checked all the same.
        _check_attempts(self.attempts)
        seconds(self.max_elapsed, what="max_elapsed")

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def fixed(
        cls,
        delay: float | timedelta,
        *,
        attempts: int | None = 3,
        max_elapsed: float | timedelta | None = None,
        retry_on: Iterable[type[BaseException]] | None = None,
        give_up_on: Iterable[type[BaseException]] = (),
    ) -> Retry:
        """The same ``delay`` (seconds) between attempts."""
        d = _non_negative(delay, what="delay")
        return cls._build(
            tenacity.wait_fixed(d),
            attempts=attempts,
            max_elapsed=max_elapsed,
            retry_on=retry_on,
            give_up_on=give_up_on,
            description=f"fixed {d:g}s",
        )

    @classmethod
    def exponential(
        cls,
        *,
        initial: float | timedelta = 0.1,
        maximum: float | timedelta = 30.0,
        multiplier: float = 2.0,
        attempts: int | None = 5,
        jitter: bool = False,
        max_elapsed: float | timedelta | None = None,
        retry_on: Iterable[type[BaseException]] | None = None,
        give_up_on: Iterable[type[BaseException]] = (),
    ) -> Retry:
        """Delays ``initial * multiplier**(n-1)`` capped at ``maximum``.

        With ``jitter`` each delay is drawn uniformly from ``[0, delay]``
        ("full jitter"), which spreads out retries of many sagas hitting the
        same failing service.
        """
        first = seconds(initial, what="initial")
        cap = seconds(maximum, what="maximum")
        assert first is not None and cap is not None
        if isinstance(multiplier, bool) or not isinstance(multiplier, int | float):
            raise PolicyError(f"multiplier must be a number, not {multiplier!r}")
        if not multiplier >= 1:
            raise PolicyError(f"multiplier cannot be less than 1, got {multiplier!r}")
        if not math.isfinite(multiplier):
            raise PolicyError(f"multiplier must be a finite number, got {multiplier!r}")
        if cap < first:
            raise PolicyError(f"maximum ({cap:g}s) cannot be less than initial ({first:g}s)")
        wait: wait_base = tenacity.wait_exponential(
            multiplier=first, max=cap, exp_base=float(multiplier)
        )
        if jitter:
            wait = _SeededFullJitter(wait)
        return cls._build(
            wait,
            attempts=attempts,
            max_elapsed=max_elapsed,
            retry_on=retry_on,
            give_up_on=give_up_on,
            description=(
                f"exponential {first:g}s x{multiplier:g} up to {cap:g}s"
                + (" with jitter" if jitter else "")
            ),
        )

    @classmethod
    def none(cls) -> Retry:
        """A single attempt: any failure is final."""
        return cls._build(
            tenacity.wait_none(),
            attempts=1,
            max_elapsed=None,
            retry_on=None,
            give_up_on=(),
            description="no retry",
        )

    @classmethod
    def _build(
        cls,
        wait: wait_base,
        *,
        attempts: int | None,
        max_elapsed: float | timedelta | None,
        retry_on: Iterable[type[BaseException]] | None,
        give_up_on: Iterable[type[BaseException]],
        description: str,
    ) -> Retry:
        return cls(
            wait=wait,
            attempts=attempts,
            max_elapsed=seconds(max_elapsed, what="max_elapsed"),
            retry_on=None if retry_on is None else _exception_types(retry_on, what="retry_on"),
            give_up_on=_exception_types(give_up_on, what="give_up_on"),
            description=description,
        )

    # -- what the policy is --------------------------------------------------------------

    @property
    def jitter(self) -> bool:
        """Whether each delay is drawn at random (full jitter: uniformly from ``[0, delay(n)]``)."""
        return isinstance(self.wait, _SeededFullJitter)

    def delay(self, attempt: int) -> float:
        """The delay after attempt ``attempt`` (from 1) failed, without jitter and without
        the attempt limit: with :attr:`jitter`, the top of the range the delay is drawn from.

        What the policy would wait is :meth:`next_delay`; this is its nominal
        schedule, e.g. for predicting the time spent backing off.
        """
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise PolicyError(f"attempt must be a whole number of at least 1, got {attempt!r}")
        wait = self.wait.window if isinstance(self.wait, _SeededFullJitter) else self.wait
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(wait(state))

    # -- decisions ----------------------------------------------------------------------

    def is_retryable(self, error: BaseException) -> bool:
        """Whether this exception may be retried at all (before counting attempts)."""
        if isinstance(error, (PermanentError, *self.give_up_on)):
            return False
        return self.retry_on is None or isinstance(error, self.retry_on)

    def next_delay(
        self,
        *,
        attempt: int,
        elapsed: float,
        seed: str,
    ) -> tuple[float | None, str | None]:
        """When the attempt after ``attempt`` may start: ``(delay, None)`` or ``(None, why not)``.

        ``attempt`` counts the attempts charged to the current budget (an
        operator's retry opens a fresh one); ``elapsed`` is the time from
        the budget's first attempt to now; ``seed`` makes jitter repeatable.
        Raises :class:`~saga.PolicyError` if the wait strategy gives a delay
        that is negative, not a number or longer than :data:`LONGEST`.
        """
        state = RetryCallState(None, None, (), {"seed": seed})  # type: ignore[arg-type]
        state.attempt_number = attempt
        state.start_time = 0.0
        state.outcome_timestamp = max(elapsed, 0.0)
        if self.attempts is not None and tenacity.stop_after_attempt(self.attempts)(state):
            return None, ("its one attempt used" if self.attempts == 1
                         else f"all {self.attempts} attempts used")
        delay = float(self.wait(state))
        if not 0 <= delay <= _LONGEST_S:  # a wait built past the constructors' checks
            raise PolicyError(f"the retry policy's wait gave a delay of {delay:g}s; a delay must "
                              f"be from 0 to 1000 years ({_LONGEST_S:g}s)")
        state.upcoming_sleep = delay
        if self.max_elapsed is not None and tenacity.stop_before_delay(self.max_elapsed)(state):
            return None, f"the next attempt would start after max_elapsed ({self.max_elapsed:g}s)"
        return delay, None

    def __str__(self) -> str:
        limit = "unlimited attempts" if self.attempts is None else count(self.attempts, "attempt")
        extra = f", within {self.max_elapsed:g}s" if self.max_elapsed else ""
        return f"{self.description}, {limit}{extra}"


def _check_attempts(attempts: object) -> None:
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
    ):
        raise PolicyError(f"attempts must be a whole number of at least 1 or None, got {attempts!r}")


def _non_negative(value: float | timedelta, *, what: str) -> float:
    """``value`` in seconds, from 0 to :data:`LONGEST`; else a :class:`~saga.PolicyError`."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{what} must be a number of seconds or a timedelta, not {value!r}")
    if math.isnan(value) or value < 0:
        raise PolicyError(f"{what} cannot be negative, got {value!r}")
    if not value <= _LONGEST_S:  # also catches an int too large for a float
        raise PolicyError(f"{what} must be at most 1000 years ({_LONGEST_S:g}s), got {value!r}")
    return float(value)


def _exception_types(
    types: Iterable[type[BaseException]], *, what: str
) -> tuple[type[BaseException], ...]:
    result: tuple[Any, ...] = (types,) if isinstance(types, type) else tuple(types)
    for t in result:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise PolicyError(f"{what} must hold exception types, got {t!r}")
    return result

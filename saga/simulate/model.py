"""One simulated call: replicas tried in turn, each with its own failure and latency draws.

The runner uses it for every attempt the coordinator makes; the predictions
use the same model of one attempt for the completion-time distribution, so
both speak of the same thing.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from saga.simulate.distributions import Distribution, Fixed

__all__ = ["AttemptDraw", "CallModel", "seeded"]

NO_LATENCY = Fixed(0.0)


def seeded(*parts: object) -> random.Random:
    """A generator seeded by ``parts`` (the seed, a saga id, a step, an attempt…).

    Draws depend only on these, never on thread timing or the order runs happen in.
    """
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


@dataclass(frozen=True, slots=True)
class AttemptDraw:
    """How one attempt went: its duration, and whether it succeeded or ran out of time."""

    duration: float
    ok: bool
    timed_out: bool
    replicas_tried: int


@dataclass(frozen=True, slots=True)
class CallModel:
    """A step's simulated work: each call fails with ``fail`` and takes a ``latency`` draw;
    an attempt tries ``replicas`` in turn and fails only when all have failed."""

    fail: float = 0.0
    latency: Distribution = NO_LATENCY
    replicas: int = 1

    def never_succeeds(self, limit: float | None) -> bool:
        """Whether every attempt fails: every call fails, or every latency passes ``limit``."""
        if self.fail >= 1.0:
            return True
        return limit is not None and self.latency.reaches(limit) >= 1.0

    def attempt(self, rng: random.Random, limit: float | None) -> AttemptDraw:
        """Draw one attempt that must end within ``limit`` seconds (``None``: no limit).

        A call whose latency would reach ``limit`` is cut there: the attempt
        lasts exactly ``limit`` and counts as timed out (as the coordinator
        counts an attempt that returns at or after its limit).
        """
        elapsed = 0.0
        for tried in range(1, self.replicas + 1):
            latency = self.latency.draw(rng)
            failed = rng.random() < self.fail
            if limit is not None and elapsed + latency >= limit:
                return AttemptDraw(limit, ok=False, timed_out=True, replicas_tried=tried)
            elapsed += latency
            if not failed:
                return AttemptDraw(elapsed, ok=True, timed_out=False, replicas_tried=tried)
        return AttemptDraw(elapsed, ok=False, timed_out=False, replicas_tried=self.replicas)

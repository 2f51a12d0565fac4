"""The saga definitions the crash and torture processes run.

Definitions are built by functions so that each process wires its steps to
its own participant ledger and its own fault plan; the test process builds
the same definitions (without faults) to finish what a killed process left.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saga import PermanentError, Retry, Saga, StepContext

from .faults import die, due
from .ledger import Ledger

__all__ = [
    "CRASH_STEPS",
    "TORTURE_STEPS",
    "CrashPlan",
    "TransientFault",
    "crash_sagas",
    "roll",
    "torture_saga",
]

CRASH_STEPS = ("a", "b", "c")
TORTURE_STEPS = ("s1", "s2", "s3")

STEP_RETRY = Retry.fixed(0.05, attempts=3)
UNDO_RETRY = Retry.fixed(0.05, attempts=None)


class TransientFault(Exception):
    """A failure worth retrying (the participant was briefly unavailable)."""


@dataclass(frozen=True, slots=True)
class CrashPlan:
    """Where a crash-test process dies inside a step.

    ``after_effect``: a step name (``"b"``) or a compensation (``"undo:b"``)
    that SIGKILLs the process once its effect is in the ledger, before the
    outcome is appended. ``block_in``: a step that writes ``marker`` and then
    blocks until the process is killed from outside.
    """

    after_effect: str | None = None
    block_in: str | None = None
    marker: Path | None = None


def crash_sagas(ledger: Ledger, plan: CrashPlan | None = None) -> list[Saga]:
    """``crash-ok`` (three steps that succeed) and ``crash-comp`` (its third step fails)."""
    plan = plan or CrashPlan()
    ok = Saga("crash-ok")
    comp = Saga("crash-comp")
    for saga in (ok, comp):
        for name in CRASH_STEPS:
            fails = saga is comp and name == "c"
            step = saga.step(name=name, retry=STEP_RETRY)(_crash_step(ledger, plan, fails=fails))
            step.compensate(retry=UNDO_RETRY)(_crash_undo(ledger, plan))
    return [ok, comp]


def _crash_step(ledger: Ledger, plan: CrashPlan, *, fails: bool) -> Any:
    def forward(ctx: StepContext) -> dict[str, Any]:
        due()
        if plan.block_in == ctx.step and plan.marker is not None:
            plan.marker.write_text(f"{ctx.saga_id} {ctx.step} {ctx.attempt}")
            while True:
                time.sleep(1.0)
        if fails:
            if plan.after_effect == ctx.step:
                die()  # the attempt is lost before it could fail
            raise PermanentError("no seats left")
        ledger.do(ctx.idempotency_key, ctx.saga_id, ctx.step)
        if plan.after_effect == ctx.step:
            die()
        return {"key": ctx.idempotency_key, "attempt": ctx.attempt}

    return forward


def _crash_undo(ledger: Ledger, plan: CrashPlan) -> Any:
    def undo(ctx: StepContext) -> None:
        due()
        ledger.undo(ctx.idempotency_key, ctx.saga_id, ctx.step)
        if plan.after_effect == f"undo:{ctx.step}":
            die()

    return undo


def roll(seed: int, key: str, attempt: int) -> float:
    """A number in [0, 1) that depends only on its arguments (same in every process)."""
    digest = hashlib.blake2b(f"{seed}:{key}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _think(seconds: float) -> None:
    """Take ``seconds``; a long call shows itself as a file named after the process.

    The torture's pauser looks there for a worker that is in the middle of a
    step (``$TORTURE_ACTIVITY`` names the directory).
    """
    where = os.environ.get("TORTURE_ACTIVITY")
    if where is None or seconds < 1.0:
        time.sleep(seconds)
        return
    marker = Path(where) / str(os.getpid())
    marker.touch()
    try:
        time.sleep(seconds)
    finally:
        marker.unlink(missing_ok=True)


def torture_saga(ledger: Ledger) -> Saga:
    """``torture``: three steps whose faults come from the saga's input.

    Input: ``seed``; ``p`` (chance an attempt fails transiently, before any
    effect); ``fail`` (a step that fails permanently, or ``None``);
    ``poison`` (a step that SIGKILLs its worker on every attempt, after its
    effect, or ``None``); ``think`` (seconds each call takes; a call of a
    second or more outlasts the lease, which the worker must keep renewing).
    """
    saga = Saga("torture")

    def forward(ctx: StepContext) -> dict[str, Any]:
        plan = ctx.input
        _think(plan["think"])
        if ctx.step == plan["fail"]:
            raise PermanentError(f"{ctx.step} refused")
        if roll(plan["seed"], ctx.idempotency_key, ctx.attempt) < plan["p"]:
            raise TransientFault(f"{ctx.step} unavailable (attempt {ctx.attempt})")
        ledger.do(ctx.idempotency_key, ctx.saga_id, ctx.step)
        if ctx.step == plan["poison"]:
            die()
        return {"key": ctx.idempotency_key}

    def undo(ctx: StepContext) -> None:
        plan = ctx.input
        _think(plan["think"])
        if roll(plan["seed"], ctx.idempotency_key, ctx.attempt) < plan["p"]:
            raise TransientFault(f"undo of {ctx.step} unavailable (attempt {ctx.attempt})")
        ledger.undo(ctx.idempotency_key, ctx.saga_id, ctx.step)

    for name in TORTURE_STEPS:
        saga.step(name=name, retry=STEP_RETRY)(forward).compensate(retry=UNDO_RETRY)(undo)
    return saga

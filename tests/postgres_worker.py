"""A worker process for the many-workers tests, and the sagas it runs.

    python -m tests.postgres_worker URL --ledger FILE [--lease S] [--poll S]
        [--concurrency N] [--gate FILE]

Prints ``ready`` once its coordinator is listening, then works until SIGTERM.
Every step attempt appends one line ``<idempotency key> <attempt> <pid>`` to
the ledger file (``O_APPEND``: lines from several processes never mix), so a
test can count how many times each effect happened and who did it.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

from saga import Coordinator, EventStore, Retry, Saga, StepContext


def record(ledger: Path, ctx: StepContext) -> None:
    """Write one line for this attempt's effect."""
    line = f"{ctx.idempotency_key} {ctx.attempt} {os.getpid()}\n".encode()
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def ledger_lines(ledger: Path) -> list[tuple[str, int, int]]:
    """The ledger as (idempotency key, attempt, pid) tuples."""
    if not ledger.exists():
        return []
    out = []
    for line in ledger.read_text().splitlines():
        key, attempt, pid = line.split()
        out.append((key, int(attempt), int(pid)))
    return out


def effect_counts(ledger: Path) -> Counter[str]:
    """How many times each idempotency key's effect ran."""
    return Counter(key for key, _, _ in ledger_lines(ledger))


def build_sagas(ledger: Path, gate: Path | None = None, step_pause: float = 0.0) -> list[Saga]:
    """``order``: three steps that record their effect; ``gated``: one step that waits for ``gate``."""
    order = Saga("order", version=1)

    @order.step(retry=Retry.fixed(0.01, attempts=3))
    def reserve(ctx: StepContext) -> dict[str, int]:
        record(ledger, ctx)
        time.sleep(step_pause)
        return {"reserved": 1}

    @order.step(retry=Retry.fixed(0.01, attempts=3))
    def charge(ctx: StepContext) -> dict[str, int]:
        record(ledger, ctx)
        time.sleep(step_pause)
        return {"charged": 1}

    @order.step(retry=Retry.fixed(0.01, attempts=3))
    def ship(ctx: StepContext) -> dict[str, int]:
        record(ledger, ctx)
        time.sleep(step_pause)
        return {"shipped": 1}

    gated = Saga("gated", version=1)

    @gated.step(retry=Retry.fixed(0.0, attempts=5))
    def wait_for_gate(ctx: StepContext) -> int:
        record(ledger, ctx)
        while gate is not None and not gate.exists():
            time.sleep(0.01)
        return ctx.attempt

    return [order, gated]


def main(argv: list[str] | None = None) -> int:
    """Run a worker until SIGTERM."""
    p = argparse.ArgumentParser(prog="postgres_worker")
    p.add_argument("url")
    p.add_argument("--ledger", type=Path, required=True)
    p.add_argument("--gate", type=Path)
    p.add_argument("--lease", type=float, default=30.0)
    p.add_argument("--poll", type=float, default=0.5)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--step-pause", type=float, default=0.0)
    p.add_argument("--worker-id")
    args = p.parse_args(argv)

    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    store = EventStore(args.url)
    coordinator = Coordinator(
        store, build_sagas(args.ledger, args.gate, args.step_pause), lease=args.lease,
        poll_interval=args.poll, worker_id=args.worker_id,
    )
    worker = threading.Thread(
        target=coordinator.work, kwargs={"concurrency": args.concurrency, "stop": stop}
    )
    listening = getattr(store, "listening", None)
    if listening is not None:
        keep = store.subscribe()  # starts the listener before the worker's first wait
        listening(10.0)
        del keep
    worker.start()
    print("ready", flush=True)
    worker.join()
    coordinator.close()
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

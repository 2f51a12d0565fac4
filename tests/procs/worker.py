"""A torture-test worker: a coordinator process driving every due ``torture`` saga.

    python -m tests.procs.worker --url URL --ledger URL [--lease S] [--concurrency N]

Runs until SIGTERM (then finishes what it is doing and exits 0), or until it
is SIGKILLed, by the test's killer or by a poison step.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from saga import Coordinator, EventStore

from .ledger import Ledger
from .sagas import torture_saga


def main(argv: list[str] | None = None) -> int:
    """Work until told to stop."""
    p = argparse.ArgumentParser(prog="worker")
    p.add_argument("--url", required=True)
    p.add_argument("--ledger", required=True)
    p.add_argument("--lease", type=float, default=1.0)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--poll", type=float, default=0.1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    ledger = Ledger(args.ledger)
    store = EventStore(args.url)
    coordinator = Coordinator(
        store, sagas=[torture_saga(ledger)], lease=args.lease, poll_interval=args.poll
    )
    coordinator.work(concurrency=args.concurrency, stop=stop)
    coordinator.close()
    store.close()
    ledger.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

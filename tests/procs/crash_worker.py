"""A coordinator process that drives one crash-test saga and may SIGKILL itself on the way.

    python -m tests.procs.crash_worker --url URL --ledger URL --saga crash-ok --id ID
        [--lease S] [--kill-append N [--after]] [--after-effect STEP|undo:STEP]
        [--block-in STEP --marker PATH] [--mode execute|run]

``execute`` starts the saga (idempotent on ``--id``) and drives it; ``run``
drives a saga that exists. On success prints the final status and exits 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saga import Coordinator, EventStore
from saga.store.sql import SqlEventStore

from .faults import due, kill_at_append
from .ledger import Ledger
from .sagas import CrashPlan, crash_sagas


def main(argv: list[str] | None = None) -> int:
    """Run one crash-test saga as told."""
    p = argparse.ArgumentParser(prog="crash_worker")
    p.add_argument("--url", required=True)
    p.add_argument("--ledger", required=True)
    p.add_argument("--saga", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--lease", type=float, default=1.0)
    p.add_argument("--kill-append", type=int, default=0)
    p.add_argument("--after", action="store_true")
    p.add_argument("--after-effect")
    p.add_argument("--block-in")
    p.add_argument("--marker", type=Path)
    p.add_argument("--mode", choices=("execute", "run"), default="execute")
    args = p.parse_args(argv)

    ledger = Ledger(args.ledger)
    store = EventStore(args.url)
    if args.kill_append:
        assert isinstance(store, SqlEventStore)
        kill_at_append(store.engine, args.kill_append, after=args.after)
    plan = CrashPlan(after_effect=args.after_effect, block_in=args.block_in, marker=args.marker)
    coordinator = Coordinator(store, sagas=crash_sagas(ledger, plan), lease=args.lease)
    if args.mode == "execute":
        view = coordinator.execute(args.saga, {"order": args.id}, saga_id=args.id)
    else:
        view = coordinator.run(args.id)
    due()  # a kill due after the last commit happens before the result is seen
    print(view.status.value, flush=True)
    coordinator.close()
    store.close()
    ledger.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

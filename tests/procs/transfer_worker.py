"""A coordinator process that drives a money transfer through a SQL participant, and may
SIGKILL itself between the participant's commit and the append of the step's outcome.

    python -m tests.procs.transfer_worker --url URL --bank URL --id ID [--lease S]
        [--die-after-debit] [--mode execute|run]

Prints the final status and exits 0 unless it killed itself.
"""

from __future__ import annotations

import argparse
from typing import Any

import sqlalchemy as sa

from saga import Coordinator, EventStore, Retry, Saga, StepContext
from saga.adapters import SqlParticipant

from .faults import die

AMOUNT = 30


def move(account: str, delta: int) -> Any:
    """Work for the participant: change one balance, answer with the new one."""

    def work(conn: sa.Connection) -> dict[str, Any]:
        conn.execute(
            sa.text("UPDATE accounts SET balance = balance + :d WHERE id = :a"), {"d": delta, "a": account}
        )
        left = conn.execute(sa.text("SELECT balance FROM accounts WHERE id = :a"), {"a": account})
        return {"account": account, "balance": left.scalar_one()}

    return work


def transfer_saga(bank: SqlParticipant, *, die_after_debit: bool) -> Saga:
    """Debit alice, credit bob; each step's effect applied through the bank's inbox."""
    saga = Saga("transfer")

    @saga.step(retry=Retry.fixed(0.1, attempts=5))
    def debit(ctx: StepContext) -> Any:
        result = bank(ctx, move("alice", -AMOUNT))
        if die_after_debit:
            die()  # the debit is committed in the bank; its outcome is not in the log
        return result

    @saga.step(retry=Retry.fixed(0.1, attempts=5))
    def credit(ctx: StepContext) -> Any:
        return bank(ctx, move("bob", AMOUNT))

    return saga


def main(argv: list[str] | None = None) -> int:
    """Drive one transfer as told."""
    p = argparse.ArgumentParser(prog="transfer_worker")
    p.add_argument("--url", required=True)
    p.add_argument("--bank", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--lease", type=float, default=1.0)
    p.add_argument("--die-after-debit", action="store_true")
    p.add_argument("--mode", choices=("execute", "run"), default="execute")
    args = p.parse_args(argv)

    bank = SqlParticipant(args.bank)
    store = EventStore(args.url)
    coordinator = Coordinator(store, [transfer_saga(bank, die_after_debit=args.die_after_debit)],
                              lease=args.lease)
    if args.mode == "execute":
        view = coordinator.execute("transfer", {"amount": AMOUNT}, saga_id=args.id)
    else:
        view = coordinator.run(args.id)
    print(view.status.value, flush=True)
    coordinator.close()
    store.close()
    bank.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

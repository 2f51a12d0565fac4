"""Money transfer between two accounts in a participant's own database.

    python -m examples.transfer

Each step changes the bank's database through ``SqlParticipant``: the change
and an inbox row keyed by the step's idempotency key commit together. The
first debit's reply is lost on the way back (the step raises after the bank
committed), so the coordinator runs the step again: the inbox answers with
the recorded result and the money moves once. A transfer larger than the
balance breaks the bank's CHECK constraint: a permanent error, nothing moves.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from saga import Coordinator, EventStore, Retry, Saga, StepContext
from saga.adapters import SqlParticipant


class Transfer(BaseModel):
    source: str
    target: str
    amount: int


def open_accounts(url: str, balances: dict[str, int]) -> None:
    """Create the bank's accounts table with these balances."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS accounts "
            "(id VARCHAR(20) PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0))"
        )
        for account, balance in balances.items():
            conn.execute(sa.text("INSERT INTO accounts VALUES (:a, :b)"), {"a": account, "b": balance})
    engine.dispose()


def balances(url: str) -> dict[str, int]:
    """Every account's balance."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return {r[0]: r[1] for r in conn.execute(sa.text("SELECT id, balance FROM accounts ORDER BY id"))}
    finally:
        engine.dispose()


def _move(account: str, delta: int) -> Any:
    def work(conn: sa.Connection) -> dict[str, Any]:
        conn.execute(
            sa.text("UPDATE accounts SET balance = balance + :d WHERE id = :a"), {"d": delta, "a": account}
        )
        balance = conn.execute(sa.text("SELECT balance FROM accounts WHERE id = :a"), {"a": account})
        return {"account": account, "balance": balance.scalar_one()}

    return work


def transfer_saga(bank: SqlParticipant, *, lose_first_reply: bool = True) -> Saga:
    """Debit the source, credit the target; a failed credit refunds the source."""
    transfer = Saga("transfer", input_model=Transfer)
    retry = Retry.fixed(0.05, attempts=5)

    @transfer.step(retry=retry)
    def debit(ctx: StepContext) -> Any:
        t: Transfer = ctx.input
        result = bank(ctx, _move(t.source, -t.amount))
        if lose_first_reply and ctx.attempt == 1:
            # The bank committed; pretend the answer never reached us.
            raise ConnectionResetError("the bank's reply was lost")
        return result

    @debit.compensate(retry=retry)
    def refund(ctx: StepContext) -> Any:
        t: Transfer = ctx.input
        return bank(ctx, _move(t.source, t.amount))

    @transfer.step(retry=retry)
    def credit(ctx: StepContext) -> Any:
        t: Transfer = ctx.input
        return bank(ctx, _move(t.target, t.amount))

    return transfer


def main(store_url: str | None = None, bank_url: str | None = None) -> dict[str, Any]:
    """Move 30 from alice to bob (once, despite a lost reply), then try to move 500."""
    with tempfile.TemporaryDirectory() as tmp:
        store_url = store_url or f"sqlite:///{Path(tmp) / 'transfers.db'}"
        bank_url = bank_url or f"sqlite:///{Path(tmp) / 'bank.db'}"
        open_accounts(bank_url, {"alice": 100, "bob": 0})
        bank = SqlParticipant(bank_url)
        try:
            with EventStore(store_url) as store, Coordinator(store, [transfer_saga(bank)]) as coordinator:
                ok = coordinator.execute(
                    "transfer", {"source": "alice", "target": "bob", "amount": 30}, saga_id="transfer-1"
                )
                too_much = coordinator.execute(
                    "transfer", {"source": "alice", "target": "bob", "amount": 500}, saga_id="transfer-2"
                )
        finally:
            bank.dispose()
        after = balances(bank_url)
    print(f"transfer-1: {ok.status.value}; debit took {ok.steps['debit'].attempts} attempts, "
          f"answered {ok.results['debit']}")
    print(f"transfer-2: {too_much.status.value} ({too_much.reason})")
    print(f"balances: {after}")
    return {"ok": ok, "too_much": too_much, "balances": after}


if __name__ == "__main__":
    main()

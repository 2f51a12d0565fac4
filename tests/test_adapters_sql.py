"""SqlParticipant on real SQLite files and real PostgreSQL databases: the inbox keeps work single."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from saga import PermanentError, Retry, StepContext, VirtualClock
from saga.adapters import (
    InvalidAdapter,
    InvalidRequest,
    ParticipantRejected,
    ParticipantUnavailable,
    SqlParticipant,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def bank_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh participant database of each kind, with an accounts table."""
    if request.param == "postgres":
        return open_accounts(str(request.getfixturevalue("postgres_url")))
    return open_accounts(f"sqlite:///{tmp_path / 'bank.db'}")


def open_accounts(url: str) -> str:
    """Give alice 100 and bob 0 in ``url``'s database."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE accounts (id VARCHAR(20) PRIMARY KEY, "
            "balance INTEGER NOT NULL CHECK (balance >= 0))"
        )
        conn.exec_driver_sql("INSERT INTO accounts VALUES ('alice', 100), ('bob', 0)")
    engine.dispose()
    return url


@pytest.fixture
def bank(bank_url: str) -> Iterator[SqlParticipant]:
    p = SqlParticipant(bank_url)
    yield p
    p.dispose()


def context(attempt: int = 1, key: str = "t-1/debit/do") -> StepContext:
    return StepContext(
        saga_id="t-1", saga_name="transfer", step="debit", attempt=attempt, idempotency_key=key,
        input=None, results={}, clock=VirtualClock(),
    )


def balance(url: str, account: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT balance FROM accounts WHERE id = :a"), {"a": account})
                       .scalar_one())
    finally:
        engine.dispose()


def has_table(url: str, name: str) -> bool:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        return sa.inspect(engine).has_table(name)
    finally:
        engine.dispose()


class Debit:
    """Work that moves ``amount`` from alice, counting how often it really ran."""

    def __init__(self, amount: int, pause: float = 0.0) -> None:
        self.amount, self.pause, self.runs = amount, pause, 0
        self._lock = threading.Lock()

    def __call__(self, conn: sa.Connection) -> dict[str, Any]:
        with self._lock:
            self.runs += 1
        conn.execute(
            sa.text("UPDATE accounts SET balance = balance - :n WHERE id = 'alice'"), {"n": self.amount}
        )
        time.sleep(self.pause)
        left = conn.execute(sa.text("SELECT balance FROM accounts WHERE id = 'alice'")).scalar_one()
        return {"debited": self.amount, "left": left}


def test_the_inbox_is_created_on_first_use_and_a_repeat_returns_the_first_result(
    bank: SqlParticipant, bank_url: str
) -> None:
    assert not has_table(bank_url, "saga_inbox")
    debit = Debit(30)
    first = bank(context(attempt=1), debit)
    assert first == {"debited": 30, "left": 70}
    assert has_table(bank_url, "saga_inbox")
    again = bank(context(attempt=2), work=debit)
    assert again == first and debit.runs == 1
    assert balance(bank_url, "alice") == 70
    assert asyncio.run(bank.acall(context(attempt=3), debit)) == first
    assert debit.runs == 1
    # Another key is another effect.
    assert bank(context(key="t-2/debit/do"), debit) == {"debited": 30, "left": 40}
    assert [c.outcome for c in context().calls.calls()] == []


def test_a_new_participant_object_reads_the_same_inbox(bank: SqlParticipant, bank_url: str) -> None:
    debit = Debit(10)
    bank(context(), debit)
    other = SqlParticipant(bank_url)
    try:
        assert other(context(attempt=2), debit) == {"debited": 10, "left": 90}
    finally:
        other.dispose()
    assert debit.runs == 1 and balance(bank_url, "alice") == 90


def test_work_that_raises_leaves_nothing_and_the_next_attempt_runs_it(
    bank: SqlParticipant, bank_url: str
) -> None:
    def half_done(conn: sa.Connection) -> None:
        conn.execute(sa.text("UPDATE accounts SET balance = 0 WHERE id = 'alice'"))
        raise ConnectionError("the reply was lost")

    with pytest.raises(ConnectionError):
        bank(context(), half_done)
    assert balance(bank_url, "alice") == 100
    assert bank(context(attempt=2), Debit(1)) == {"debited": 1, "left": 99}


def test_a_constraint_is_a_permanent_rejection_and_changes_nothing(
    bank: SqlParticipant, bank_url: str
) -> None:
    ctx = context()
    with pytest.raises(ParticipantRejected) as caught:
        bank(ctx, Debit(500))
    assert isinstance(caught.value, PermanentError)
    assert not Retry.fixed(1.0).is_retryable(caught.value)
    assert balance(bank_url, "alice") == 100
    [c] = ctx.calls.calls()
    assert c.adapter == "sql" and c.outcome == "error" and c.error is not None
    assert c.error.type == "ParticipantRejected"
    # The key is free: a later attempt with an amount that fits runs.
    assert bank(context(attempt=2), Debit(5))["left"] == 95


def test_a_result_that_is_not_json_is_refused_before_commit(bank: SqlParticipant, bank_url: str) -> None:
    def returns_a_set(conn: sa.Connection) -> Any:
        Debit(10)(conn)
        return {1, 2}

    with pytest.raises(InvalidRequest, match="non-JSON"):
        bank(context(), returns_a_set)
    assert balance(bank_url, "alice") == 100
    with pytest.raises(InvalidRequest, match="work must be a function"):
        bank(context(), work="UPDATE accounts SET balance = 0")


def test_racing_attempts_run_the_work_once(bank: SqlParticipant, bank_url: str) -> None:
    debit = Debit(25, pause=0.3)
    answers: list[Any] = []

    def attempt(n: int) -> None:
        answers.append(bank(context(attempt=n), debit))

    threads = [threading.Thread(target=attempt, args=(n,)) for n in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert debit.runs == 1
    assert answers == [{"debited": 25, "left": 75}] * 3
    assert balance(bank_url, "alice") == 75


def test_the_target_is_the_database_without_its_password() -> None:
    p = SqlParticipant("postgresql+psycopg://bank:s3cret@127.0.0.1:5432/ledger")
    assert p.target == "postgresql+psycopg://bank@127.0.0.1:5432/ledger"


@pytest.mark.postgres
def test_an_unreachable_database_is_retryable(postgres_url: str) -> None:
    url = sa.make_url(postgres_url).set(port=1).render_as_string(hide_password=False)
    bank = SqlParticipant(url)
    ctx = context()
    with pytest.raises(ParticipantUnavailable) as caught:
        bank(ctx, Debit(1))
    assert Retry.fixed(1.0).is_retryable(caught.value)
    assert ctx.calls.calls()[0].outcome == "error"


def test_a_locked_sqlite_database_is_retryable_and_bad_sql_is_not(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    bank = SqlParticipant(url)
    with pytest.raises(ParticipantRejected, match="no such table"):
        bank(context(), lambda conn: conn.execute(sa.text("SELECT * FROM nowhere")).all())
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    blocker = engine.raw_connection()
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ParticipantUnavailable, match="locked"):
            SqlParticipant(url, lock_timeout=0.2)(context(key="other"), lambda conn: 1)
    finally:
        blocker.rollback()
        blocker.close()
        engine.dispose()


@pytest.mark.postgres
def test_a_postgres_lock_held_too_long_is_retryable(postgres_url: str) -> None:
    open_accounts(postgres_url)
    slow = Debit(1, pause=1.5)
    first = SqlParticipant(postgres_url)
    impatient = SqlParticipant(postgres_url, lock_timeout=0.2)
    try:
        runner = threading.Thread(target=first, args=(context(), slow))
        runner.start()
        while slow.runs == 0:
            time.sleep(0.01)
        with pytest.raises(ParticipantUnavailable, match="lock"):
            impatient(context(attempt=2), slow)
        runner.join()
        assert slow.runs == 1
        assert impatient(context(attempt=3), slow) == {"debited": 1, "left": 99}
    finally:
        first.dispose()
        impatient.dispose()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "not a url"}, "not a database URL"),
        ({"url": "sqlite://", "inbox": "drop table x"}, "inbox must be"),
        ({"url": "sqlite://", "lock_timeout": 0}, "lock_timeout must be"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidAdapter, match=message):
        SqlParticipant(**kwargs)

"""A worker process SIGKILLed after a participant committed and before the step's outcome was
appended: after a restart the saga completes and the participant applied the debit once."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from saga import EventStore

from .procs.transfer_worker import AMOUNT

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 60.0


def _worker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.procs.transfer_worker", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False,
    )


def _open_accounts(url: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE accounts (id VARCHAR(20) PRIMARY KEY, balance INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO accounts VALUES ('alice', 100), ('bob', 0)")
    engine.dispose()


def _bank(url: str) -> tuple[dict[str, int], int]:
    """The balances, and how many inbox rows the participant holds."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            balances = {r[0]: r[1] for r in conn.execute(sa.text("SELECT id, balance FROM accounts"))}
            inbox = conn.execute(sa.text("SELECT count(*) FROM saga_inbox")).scalar_one()
        return balances, int(inbox)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sigkill_between_the_participants_commit_and_the_outcome_append(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgres":
        url = bank_url = str(request.getfixturevalue("postgres_url"))
    else:
        url, bank_url = f"sqlite:///{tmp_path / 'saga.db'}", f"sqlite:///{tmp_path / 'bank.db'}"
    _open_accounts(bank_url)
    common = ["--url", url, "--bank", bank_url, "--id", "transfer-1", "--lease", "0.5"]

    killed = _worker(*common, "--die-after-debit")
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    # The bank committed the debit; the log has the attempt's start and no outcome.
    assert _bank(bank_url) == ({"alice": 100 - AMOUNT, "bob": 0}, 1)
    with EventStore(url) as store:
        types = [(e.type, e.data.get("step")) for e in store.load("transfer-1")]
    assert types == [("SagaStarted", None), ("StepAttemptStarted", "debit")]

    restarted = _worker(*common, "--mode", "run")
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.strip() == "completed"

    assert _bank(bank_url) == ({"alice": 100 - AMOUNT, "bob": AMOUNT}, 2)
    with EventStore(url) as store:
        events = [(e.type, e.data) for e in store.load("transfer-1")]
    debit = [(t, d) for t, d in events if d.get("step") == "debit"]
    assert [t for t, _ in debit] == [
        "StepAttemptStarted", "StepAttemptFailed", "StepAttemptStarted", "StepSucceeded",
    ]
    assert debit[1][1]["lost"] is True
    # The second attempt got the first one's answer from the inbox: the debit ran once.
    assert debit[3][1]["result"] == {"account": "alice", "balance": 100 - AMOUNT}
    assert events[-1][0] == "SagaCompleted"

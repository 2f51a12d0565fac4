"""The `saga` command: commands work, bad input writes nothing. Most run in this process; a start
and a worker, the malformed arguments and the bad URL run the installed console script as real
processes, so that it stays covered."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from saga import EventStore

from .cli_run import error_line, run

TARGET = "tests.fixtures.cli_sagas"


def saga(db: Path, *args: str, check: bool = True, process: bool = False
         ) -> subprocess.CompletedProcess[str]:
    result = run("--db", f"sqlite:///{db}", *args, timeout=60, process=process)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def fails(db: Path, *args: str, code: int = 1, process: bool = False) -> str:
    return error_line("--db", f"sqlite:///{db}", *args, code=code, process=process)


def snapshot(db: Path) -> list[tuple[str, int]]:
    with EventStore(f"sqlite:///{db}") as store:
        return [(s.saga_id, s.last_seq) for s in store.find(limit=1000)]


def test_start_worker_show_history_list(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    out = saga(db, "start", TARGET, "place-order", "--input", '{"sku": "book", "quantity": 2}',
               "--id", "o-1", process=True)
    assert out.stdout.strip() == "o-1"
    saga(db, "start", TARGET, "place-order", "--input", '{"sku": "declined", "quantity": 1}',
         "--id", "o-2")
    saga(db, "worker", TARGET, "--until-idle", "--concurrency", "2", process=True)
    listing = saga(db, "list").stdout
    assert "o-1  place-order v1  completed" in listing
    assert "o-2  place-order v1  compensated" in listing
    assert "o-1" not in saga(db, "list", "--status", "compensated").stdout
    shown = saga(db, "show", "o-2").stdout
    assert re.search(r"charge +attempt 1 failed: PermanentError: card declined", shown)
    assert re.search(r"reserve_stock +compensated on attempt 1", shown)
    lines = saga(db, "history", "o-1", "--json").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0]["type"] == "SagaStarted" and rows[-1]["type"] == "SagaCompleted"
    assert all({"seq", "type", "data", "recorded_at"} <= r.keys() for r in rows)


def test_input_from_file_and_idempotent_start(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    payload = tmp_path / "order.json"
    payload.write_text('{"sku": "pen", "quantity": 3}')
    saga(db, "start", TARGET, "place-order", "--input", f"@{payload}", "--id", "o-9")
    before = snapshot(db)
    saga(db, "start", TARGET, "place-order", "--input", f"@{payload}", "--id", "o-9")
    assert snapshot(db) == before
    assert "different input" in fails(
        db, "start", TARGET, "place-order", "--input", '{"sku": "pen", "quantity": 4}', "--id", "o-9"
    )
    assert snapshot(db) == before


def test_cancel_and_retry(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    saga(db, "start", TARGET, "place-order", "--input", '{"sku": "book", "quantity": 1}',
         "--id", "c-1")
    saga(db, "cancel", "c-1", "--reason", "customer asked")
    saga(db, "worker", TARGET, "--until-idle")
    shown = saga(db, "show", "c-1").stdout.splitlines()
    assert shown[0] == "saga c-1  (place-order v1)  compensated"
    assert shown[1] == "  reason: cancelled: customer asked"
    assert "only a running saga can be cancelled" in fails(db, "cancel", "c-1")

    saga(db, "start", TARGET, "place-order", "--input", '{"sku": "stuck", "quantity": 1}',
         "--id", "r-1")
    saga(db, "worker", TARGET, "--until-idle")
    assert "r-1  place-order v1  failed" in saga(db, "list").stdout
    assert saga(db, "retry", "r-1").stdout == "r-1: compensating (a worker resumes its compensation)\n"
    assert "r-1  place-order v1  compensating" in saga(db, "list").stdout
    last = json.loads(saga(db, "history", "r-1", "--json").stdout.splitlines()[-1])
    assert last["type"] == "SagaRetryRequested"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("start", TARGET, "no-such-saga", "--input", "{}"), "unknown saga 'no-such-saga'"),
        (("start", TARGET, "place-order", "--input", '{"sku": 1}'), "invalid input"),
        (("start", TARGET, "place-order", "--input", "{not json"), "not valid JSON"),
        (("start", TARGET, "place-order", "--input", "@/no/such/file.json"), "cannot read --input file"),
        (("start", "tests.fixtures.broken_target", "x", "--input", "{}"), "does not import"),
        (("start", "tests.fixtures.twice", "twice", "--input", "{}"), "used twice"),
        (("start", "no_such_module_anywhere", "x", "--input", "{}"), "does not import"),
        (("start", f"{TARGET}:nothing", "x", "--input", "{}"), "has no attribute"),
        (("worker", "tests.fixtures.broken_target", "--until-idle"), "does not import"),
        (("show", "unknown-id"), "no saga has id 'unknown-id'"),
        (("history", "unknown-id", "--json"), "no saga has id 'unknown-id'"),
        (("cancel", "unknown-id"), "no saga has id 'unknown-id'"),
        (("retry", "unknown-id"), "no saga has id 'unknown-id'"),
        (("list", "--status", "bogus"), "unknown status 'bogus'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    db = tmp_path / "cli.db"
    saga(db, "start", TARGET, "place-order", "--input", '{"sku": "book", "quantity": 1}',
         "--id", "existing")
    before = snapshot(db)
    assert message in fails(db, *args)
    assert snapshot(db) == before


def test_read_commands_do_not_create_a_database(tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    assert "no database at" in fails(db, "list")
    assert "no database at" in fails(db, "show", "x")
    assert not db.exists()


def test_bad_start_on_a_fresh_path_creates_no_file(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    fails(db, "start", TARGET, "place-order", "--input", '{"sku": 1}')
    fails(db, "start", TARGET, "nope", "--input", "{}")
    assert not db.exists()


def test_malformed_arguments_exit_2(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    assert "required" in fails(db, "worker", code=2, process=True)
    assert "must be at least 1" in fails(db, "worker", TARGET, "--concurrency", "0", code=2,
                                         process=True)
    assert "is not a whole number" in fails(db, "list", "--limit", "x", code=2, process=True)
    assert not db.exists()


def test_bad_database_url(tmp_path: Path) -> None:
    result = run("--db", "nonsense", "list", cwd=tmp_path, timeout=60, process=True)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("saga: error: not a database URL: it has no scheme")
    assert "nonsense" not in result.stderr  # a value without a scheme is never echoed


def test_db_upgrade_and_demo(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    assert "schema revision" in saga(db, "db", "upgrade").stdout
    out = saga(db, "demo").stdout
    assert out.count("=> completed") == 1
    assert out.count("=> compensated") == 1
    assert "timed out" in out and "next attempt in" in out
    assert "compensating: step charge_card failed: PermanentError: card declined" in out
    with EventStore(f"sqlite:///{db}") as store:
        statuses = sorted(s.status.value for s in store.find())
    assert statuses == ["compensated", "completed"]

"""What the ``saga`` command prints is safe for a terminal: text from the log cannot
forge lines or drive the terminal, and no error echoes a huge value whole."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .cli_run import error_line, ok, run
from .fixtures.hostile import FORGED

HOSTILE = "tests.fixtures.hostile"
ORDERS = "tests.fixtures.cli_sagas"
LONG = "x" * 10_000


def terminal_safe(text: str) -> bool:
    """Every character is printable, apart from the newlines that end lines."""
    return all(c.isprintable() for line in text.split("\n") for c in line)


def test_an_error_message_cannot_forge_lines_of_the_timeline(tmp_path: Path) -> None:
    db = ("--db", f"sqlite:///{tmp_path / 'h.db'}")
    ok(*db, "start", HOSTILE, "hostile", "--input", "null", "--id", "h-1")
    ok(*db, "worker", HOSTILE, "--until-idle")
    shown = ok(*db, "show", "h-1")
    assert terminal_safe(shown), shown
    assert "\\x1b[2K\\r" in shown and "\\u202e" in shown and "\\x9b" in shown
    lines = shown.splitlines()
    assert lines[0].endswith("compensated")
    forged = [line for line in lines if "succeeded on attempt 1: {}" in line]
    assert forged, shown
    assert all("PermanentError" in line for line in forged)  # inside the failure, not a line of its own
    assert not any(line.lstrip().startswith("+   0.003s") for line in lines)
    assert re.search(r"reserve +succeeded on attempt 1: \"\\u001b\[31mred\\u001b\[0m\"", shown)

    history = ok(*db, "history", "h-1")
    assert terminal_safe(history)
    assert len(history.splitlines()) == len(ok(*db, "history", "h-1", "--json").splitlines())
    rows = [json.loads(line) for line in ok(*db, "history", "h-1", "--json").splitlines()]
    assert FORGED in {r["data"].get("message") for r in rows}  # JSON keeps the text exact


def test_a_reason_and_an_import_error_are_escaped(tmp_path: Path) -> None:
    db = ("--db", f"sqlite:///{tmp_path / 'r.db'}")
    ok(*db, "start", ORDERS, "place-order", "--input", '{"sku": "a", "quantity": 1}', "--id", "r-1")
    ok(*db, "cancel", "r-1", "--reason", "\x1b[2K\rcompleted\x07")
    assert "operator asked to cancel: \\x1b[2K\\rcompleted\\x07" in ok(*db, "show", "r-1")
    ok(*db, "worker", ORDERS, "--until-idle")
    shown = ok(*db, "show", "r-1")
    assert terminal_safe(shown)
    assert "reason: cancelled: \\x1b[2K\\rcompleted\\x07" in shown
    assert terminal_safe(ok(*db, "list"))

    result = run(*db, "start", "tests.fixtures.exploding", "x", "--input", "{}")
    assert result.returncode == 1
    assert terminal_safe(result.stderr)
    assert result.stderr.count("\n") == 1
    assert "RuntimeError: \\x1b[2K\\rsaga: all good" in result.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("show", LONG), 2),
        (("history", LONG, "--json"), 2),
        (("history", LONG), 2),
        (("cancel", LONG), 2),
        (("retry", LONG, "--reason", "again"), 2),
        (("start", ORDERS, "place-order", "--input", '{"sku": "a", "quantity": 1}', "--id", LONG), 2),
        (("start", ORDERS, LONG, "--input", "{}"), 1),
        (("start", ORDERS, "place-order", "--input", f"@/tmp/{LONG}"), 1),
        (("list", "--status", LONG), 1),
        (("worker", LONG), 1),
        (("worker", f"{ORDERS}:{LONG}"), 1),
        (("worker", ORDERS, "--lease", LONG), 2),
    ],
    ids=lambda a: "-".join(x[:12] for x in a) if isinstance(a, tuple) else str(a),
)
def test_a_long_value_is_shortened_in_the_error(
    tmp_path: Path, args: tuple[str, ...], code: int
) -> None:
    db = ("--db", f"sqlite:///{tmp_path / 'l.db'}")
    ok(*db, "start", ORDERS, "place-order", "--input", '{"sku": "a", "quantity": 1}', "--id", "l-1")
    before = ok(*db, "history", "l-1", "--json")
    line = error_line(*db, *args, code=code)
    assert len(line) < 400, line[:400]
    assert re.search(r"…\(\d{1,3}(,\d{3})* characters\)", line), line[:400]
    assert ok(*db, "history", "l-1", "--json") == before


@pytest.mark.parametrize("args", [(LONG,), ("list", "--limit", LONG), ("show", "a", LONG)],
                         ids=["command", "limit", "extra"])
def test_a_long_malformed_argument_is_shortened(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run("--db", f"sqlite:///{tmp_path / 'm.db'}", *args)
    assert result.returncode == 2
    assert len(result.stderr) < 2000, result.stderr[:400]
    assert "characters)" in result.stderr.strip().splitlines()[-1]


def test_log_lines_are_escaped(tmp_path: Path) -> None:
    result = run("--db", f"sqlite:///{tmp_path / 'n.db'}", "worker", "tests.fixtures.noisy", "--until-idle")
    assert result.returncode == 0, result.stderr
    assert terminal_safe(result.stderr)
    assert "service said: \\x1b[2K\\rall clear\\x1b]0;owned\\x07" in result.stderr

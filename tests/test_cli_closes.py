"""Every command closes the store it opens, when it succeeds and when it fails."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from saga.cli.command import main

from .cli_run import ROOT

TARGET = "tests.fixtures.cli_sagas"
ORDER = '{"sku": "book", "quantity": 1}'


def open_handles(url: str) -> int:
    """Files of a SQLite database this process holds open, or sessions on a PostgreSQL one
    other than the one asking."""
    u = sa.make_url(url)
    if u.get_backend_name() == "sqlite":
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir()
                   if os.path.realpath(fd).startswith(os.path.realpath(str(u.database))))
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )).scalar_one())
    finally:
        engine.dispose()


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in the project's root (where the TARGET is), restoring the signal handlers a
    worker installs."""
    monkeypatch.chdir(ROOT)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in handlers.items():
        signal.signal(s, handler)


@pytest.mark.usefixtures("in_root")
def test_every_command_closes_its_store(sql_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", sql_url]
    commands: list[tuple[list[str], int]] = [
        (["start", TARGET, "place-order", "--input", ORDER, "--id", "a"], 0),
        (["start", TARGET, "place-order", "--input", '{"sku": "pen", "quantity": 2}', "--id", "a"], 1),
        (["list"], 0),
        (["show", "a"], 0),
        (["show", "missing"], 1),
        (["history", "a", "--json"], 0),
        (["history", "missing"], 1),
        (["retry", "a"], 1),
        (["cancel", "a", "--reason", "asked"], 0),
        (["worker", TARGET, "--until-idle"], 0),
        (["cancel", "a"], 1),
        (["db", "upgrade"], 0),
        (["list", "--status", "compensated"], 0),
    ]
    for args, code in commands:
        assert main([*db, *args]) == code, (args, capsys.readouterr())
        assert open_handles(sql_url) == 0, args
    assert "a  place-order v1  compensated" in capsys.readouterr().out.splitlines()[-1]

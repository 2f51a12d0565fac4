"""Opening a store: reading commands never write, and every database that cannot be used
is refused with one line (bad URLs, permanent connection errors, a schema too new)."""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from saga import EventStore, InvalidInput, SagaNotFound, StoreError
from saga.cli.command import main
from saga.store.base import SchemaMode
from tests.conftest import postgres_admin_url

READERS = (["list"], ["show", "some-id"], ["history", "some-id"])


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the ``saga`` command in-process; it must fail with exactly one line on stderr."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("saga: error: "), err
    return lines[0]


def _fingerprint(url: str) -> tuple[object, ...]:
    """What a write would change: tables, functions and triggers; for SQLite also the bytes
    of the file (and whether a WAL file appeared) and the journal mode."""
    u = sa.make_url(url)
    if u.get_backend_name() == "sqlite":
        path = Path(str(u.database))
        if not path.exists():
            return ("missing", Path(f"{path}-wal").exists())
        lite = sqlite3.connect(path)
        mode = lite.execute("PRAGMA journal_mode").fetchone()[0]
        tables = sorted(r[0] for r in lite.execute("SELECT name FROM sqlite_master"))
        lite.close()
        return (hashlib.sha256(path.read_bytes()).hexdigest(), mode, tables,
                Path(f"{path}-wal").exists())
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            pg_tables = sorted(conn.execute(sa.text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
            functions = sorted(conn.execute(sa.text(
                "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public'")).scalars())
            triggers = sorted(conn.execute(sa.text(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars())
    finally:
        engine.dispose()
    return (pg_tables, functions, triggers)


def _add_application_table(url: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id integer PRIMARY KEY, name text)")
        conn.exec_driver_sql("INSERT INTO customers VALUES (1, 'Ada')")
    engine.dispose()


# -- reading commands write nothing ------------------------------------------------------------


def test_reading_commands_refuse_a_foreign_database_and_write_nothing(
    empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_application_table(empty_url)
    before = _fingerprint(empty_url)
    for command in READERS:
        line = one_line_error(capsys, "--db", empty_url, *command)
        assert "holds other tables and no saga log" in line, line
        assert _fingerprint(empty_url) == before, command
    with pytest.raises(StoreError, match="no saga log"):
        EventStore(empty_url, schema="require")
    assert _fingerprint(empty_url) == before


def test_reading_commands_on_an_empty_database_create_nothing(
    empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _fingerprint(empty_url)
    for command in READERS:
        line = one_line_error(capsys, "--db", empty_url, *command)
        assert "nothing has been started there" in line, line
        assert _fingerprint(empty_url) == before, command
    with pytest.raises(SagaNotFound):
        EventStore(empty_url, schema="require")
    assert _fingerprint(empty_url) == before


def test_an_existing_empty_sqlite_file_keeps_its_journal(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # an empty file, rollback journal
    url = f"sqlite:///{path}"
    before = _fingerprint(url)
    one_line_error(capsys, "--db", url, "list")
    assert _fingerprint(url) == before


def test_only_an_upgrade_or_a_writer_creates_the_schema(empty_url: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", empty_url, "db", "upgrade"]) == 0
    capsys.readouterr()
    after_upgrade = _fingerprint(empty_url)
    assert main(["--db", empty_url, "list"]) == 0
    assert capsys.readouterr().out == ""
    assert _fingerprint(empty_url)[:-1] == after_upgrade[:-1]  # (SQLite's WAL file may come)


# -- a schema from a newer library -------------------------------------------------------------


def _from_the_future(url: str) -> None:
    EventStore(url).close()
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    engine.dispose()


def test_a_database_from_a_newer_library_is_refused_as_such(
    empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _from_the_future(empty_url)
    modes: tuple[SchemaMode, ...] = ("create", "require")
    for schema in modes:
        with pytest.raises(StoreError, match="library is older than the database"):
            EventStore(empty_url, schema=schema)
    for command in (["list"], ["show", "x"], ["db", "upgrade"]):
        line = one_line_error(capsys, "--db", empty_url, *command)
        assert "library is older than the database" in line, line
        assert "saga db upgrade" not in line


# -- malformed URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [
    ("postgresql+psycopg://postgres@127.0.0.1:abc/db", ["list"], "is the port a number"),
    ("postgresql+nosuchdriver://postgres@127.0.0.1/db", ["list"], "unsupported driver"),
    ("postgresql+psycopg2://postgres@127.0.0.1/db", ["list"], "use postgresql+psycopg"),
    ("oracle://scott:tiger@127.0.0.1/db", ["list"], "unsupported database 'oracle'"),
    ("sqlite://user:s3cret@/saga.db", ["db", "upgrade"], "names a file, not a server"),
    ("sqlite://user:s3cret@/saga.db", ["list"], "names a file, not a server"),
])
def test_a_malformed_url_is_one_line(case: tuple[str, list[str], str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    url, command, says = case
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, "--db", url, *command)
    assert says in line, line
    assert "s3cret" not in line and "tiger" not in line
    assert list(tmp_path.iterdir()) == []  # nothing was created
    with pytest.raises(InvalidInput):
        EventStore(url)


def test_a_value_without_a_scheme_is_never_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    value = "admin:s3cret@db.internal/prod"
    line = one_line_error(capsys, "--db", value, "list")
    assert "no scheme" in line
    assert "s3cret" not in line and "db.internal" not in line


def test_long_urls_are_shortened_and_passwords_masked(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, "--db", "postgresql+nosuch://u:s3cret@h/" + "x" * 10_000, "list")
    assert len(line) < 300 and "s3cret" not in line
    line = one_line_error(capsys, "--db", "postgresql+psycopg://u:s3cret@127.0.0.1:abc/db", "list")
    assert "s3cret" not in line and "***" in line


# -- permanent connection errors ---------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _permanent_errors() -> list[tuple[str, str]]:
    admin = sa.make_url(postgres_admin_url())
    return [
        (admin.set(port=_closed_port()).render_as_string(False), "refused"),
        (admin.set(username="no_such_role_x").render_as_string(False),
         'role "no_such_role_x" does not exist'),
        (admin.set(database="no_such_database_x").render_as_string(False),
         'database "no_such_database_x" does not exist'),
        (admin.set(port=99999).render_as_string(False), "invalid port"),
        (admin.update_query_dict({"sslmode": "bogus"}).render_as_string(False), "sslmode"),
    ]


@pytest.mark.postgres
@pytest.mark.parametrize("case", range(5))
def test_a_permanent_connection_error_fails_fast_with_one_line(
    case: int, capsys: pytest.CaptureFixture[str], postgres_databases: object
) -> None:
    url, says = _permanent_errors()[case]
    for command in (["list"], ["db", "upgrade"]):
        started = time.monotonic()
        line = one_line_error(capsys, "--db", url, *command)
        assert time.monotonic() - started < 5, line
        assert says in line, line
        assert "_ensure_schema" not in line and "failed:" not in line.split(": ")[2]
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot open the database"):
        EventStore(url)
    assert time.monotonic() - started < 5

"""The audit trail and the export, attacked: an export written over its own database, ids that
do not exist, heads taken before the log grew, rows replaced behind the triggers' back, moved
timestamps, and several sagas tampered with at once.

Tampering is raw SQL, as an attacker would write it (on PostgreSQL as a superuser with the
trigger disabled); what is checked is what ``saga`` prints and its exit code.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from saga import Coordinator, EventStore, Saga, StepContext, StoreError, VirtualClock
from saga.store import migrate
from saga.store.audit import Head
from saga.store.hashing import event_hash
from saga.store.sql import SqlEventStore
from tests.cli_run import error_line, ok, run
from tests.helpers import open_store, snapshot
from tests.test_log_queries import _tamper

IDS = ["a", "b", "c"]


def _trip() -> Saga:
    saga = Saga("trip")

    @saga.step
    def book(ctx: StepContext) -> dict[str, Any]:
        return {"ref": f"B-{ctx.saga_id}"}

    @saga.step
    def pay(ctx: StepContext) -> str:
        return "paid"

    return saga


def _run(url: str, *ids: str, drive: bool = True) -> None:
    """Start sagas ``ids`` on ``url`` (and drive them until they rest)."""
    with open_store(url) as store:
        coordinator = Coordinator(store, [_trip()], clock=VirtualClock(), poll_interval=60.0)
        for saga_id in ids:
            coordinator.start("trip", {}, saga_id=saga_id)
        if drive:
            coordinator.work(until_idle=True)


@pytest.fixture
def log(sql_url: str) -> str:
    """Three completed sagas, on SQLite and PostgreSQL."""
    _run(sql_url, *IDS)
    return sql_url


def _last_seq(url: str, saga_id: str) -> int:
    with open_store(url) as store:
        return store.summary(saga_id).last_seq


# -- 5: an export never replaces the log it reads ------------------------------------------------


def test_export_refuses_to_write_over_the_database_or_any_file_of_it(tmp_path: Path) -> None:
    _run(f"sqlite:///{tmp_path / 'X.db'}", *IDS)
    db = tmp_path / "X.db"
    before = db.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.jsonl").symlink_to(db)
    (tmp_path / "wal-link.jsonl").symlink_to(tmp_path / "X.db-wal")  # dangling, for now
    os.link(db, tmp_path / "hard.jsonl")
    for url in ("sqlite:///X.db", f"sqlite:///{db}"):
        for output in ("X.db", str(db), "./sub/../X.db", "X.db-wal", "X.db-shm", "X.db-journal",
                       "link.jsonl", "wal-link.jsonl", "hard.jsonl"):
            line = error_line("--db", url, "export", "--output", output, cwd=tmp_path)
            assert "is a file of the database" in line and "X.db" in line, (url, output, line)
    assert db.read_bytes() == before
    assert not (tmp_path / "X.db-journal").exists()
    assert ok("--db", "sqlite:///X.db", "audit", "verify", cwd=tmp_path).startswith("ok: 3 sagas")
    # another file in the same place is written as before
    result = run("--db", "sqlite:///X.db", "export", "--output", "X.jsonl", cwd=tmp_path)
    assert result.returncode == 0 and "events written to X.jsonl" in result.stderr
    assert (tmp_path / "X.jsonl").read_text().count("\n") > len(IDS)


# -- 8: an id that names no saga -------------------------------------------------------------------


def test_verifying_a_saga_that_does_not_exist_fails(log: str) -> None:
    line = error_line("--db", log, "audit", "verify", "nope")
    assert "no saga has id 'nope'" in line
    _tamper(EventStore(log, schema="require"),
            "DELETE FROM saga_events WHERE saga_id = 'b'", "DELETE FROM sagas WHERE saga_id = 'b'")
    assert "no saga has id 'b'" in error_line("--db", log, "audit", "verify", "b")
    # a saga whose index row is left, with no events, is named as tampered with
    _tamper(EventStore(log, schema="require"), "DELETE FROM saga_events WHERE saga_id = 'c'")
    result = run("--db", log, "audit", "verify", "c")
    assert result.returncode == 1 and result.stdout.startswith("tampered: saga c: seq 1 is missing")
    assert ok("--db", log, "audit", "verify", "a").startswith("ok: 1 saga,")


# -- 9: a head taken earlier verifies against a log that only grew ---------------------------------


def test_a_head_verifies_against_a_log_that_grew_and_catches_a_cut(log: str) -> None:
    head = ok("--db", log, "audit", "head").strip()
    _run(log, "d", "e")  # the log grows: new sagas ...
    _run(log, "f", drive=False)  # ... and one left running
    assert ok("--db", log, "audit", "verify", "--head", head).startswith("ok: 6 sagas")
    assert ok("--db", log, "audit", "verify", "--head",
              ok("--db", log, "audit", "head").strip()).startswith("ok: 6 sagas")
    # the last event of a saga the head knew is cut off, its index row made to agree
    last = _last_seq(log, "a")
    with open_store(log) as store:
        _tamper(store, f"DELETE FROM saga_events WHERE saga_id = 'a' AND seq = {last}",
                f"UPDATE sagas SET last_seq = {last - 1} WHERE saga_id = 'a'")
    assert ok("--db", log, "audit", "verify").startswith("ok: 6 sagas")  # no chain can show it
    result = run("--db", log, "audit", "verify", "--head", head)
    assert result.returncode == 1, result.stdout
    assert result.stdout.startswith("tampered: the log differs from the head"), result.stdout
    assert "3 sagas with 18 events; now 3 sagas with 17 events" in result.stdout


def test_a_head_of_the_old_format_is_refused_with_a_reason(log: str) -> None:
    line = error_line("--db", log, "audit", "verify", "--head", "0123456789abcdef" * 4)
    assert "a head from before" in line and "saga audit head" in line


@pytest.mark.postgres
def test_a_head_taken_while_an_append_is_in_flight_verifies_once_it_commits(
    postgres_url: str,
) -> None:
    """On PostgreSQL an append can commit after a later one: the head waits for it."""
    _run(postgres_url, *IDS)
    engine = sa.create_engine(postgres_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            first = conn.execute(sa.text(
                "SELECT type, schema_version, data, recorded_at FROM saga_events "
                "WHERE saga_id = 'a' AND seq = 1")).one()
            h = event_hash("late", 1, first.type, first.schema_version, first.data, None,
                           recorded_at=first.recorded_at)
            conn.execute(sa.text(  # an append that has drawn its position and not committed
                "INSERT INTO sagas SELECT 'late', name, version, 'completed', 1, created_at, "
                "updated_at, NULL, NULL, NULL, NULL FROM sagas WHERE saga_id = 'a'"))
            conn.execute(sa.text(
                "INSERT INTO saga_events (saga_id, seq, type, schema_version, data, recorded_at, "
                "writer, hash, hash_version) SELECT 'late', 1, type, schema_version, data, "
                "recorded_at, writer, :h, 2 FROM saga_events WHERE saga_id = 'a' AND seq = 1"),
                {"h": h})
            _run(postgres_url, "after")  # a later append commits first
            taken: dict[str, Any] = {}
            thread = threading.Thread(target=lambda: taken.update(
                result=run("--db", postgres_url, "audit", "head")))
            thread.start()
            thread.join(1.5)
            assert thread.is_alive(), "the head did not wait for the append in flight"
            conn.commit()
        thread.join(60)
    finally:
        engine.dispose()
    result = taken["result"]
    assert result.returncode == 0, result.stderr
    out = ok("--db", postgres_url, "audit", "verify", "--head", result.stdout.strip())
    assert out.startswith("ok: 5 sagas")


@pytest.mark.postgres
def test_a_head_gives_up_on_a_transaction_that_stays_open(postgres_url: str) -> None:
    _run(postgres_url, *IDS)
    engine = sa.create_engine(postgres_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(
                "INSERT INTO saga_events (saga_id, seq, type, schema_version, data, recorded_at, "
                "hash) SELECT 'x', 1, type, schema_version, data, recorded_at, hash "
                "FROM saga_events WHERE saga_id = 'a' AND seq = 1"))
            with open_store(postgres_url) as store, \
                    pytest.raises(StoreError, match=r"still open after 0\.5 s"):
                store.head(wait=0.5)
            conn.rollback()
    finally:
        engine.dispose()


# -- 10: rows replaced behind the triggers, and times moved ----------------------------------------


def test_sqlite_refuses_insert_or_replace_on_the_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'saga.db'}"
    _run(url, *IDS)
    before = snapshot(url)
    columns = "saga_id, seq, type, schema_version, data, recorded_at, writer, hash"
    db = sqlite3.connect(tmp_path / "saga.db")
    try:
        for sql in (
            f"INSERT OR REPLACE INTO saga_events ({columns}) SELECT saga_id, seq, 'X', "
            "schema_version, data, recorded_at, writer, hash FROM saga_events "
            "WHERE saga_id = 'a' AND seq = 2",
            f"REPLACE INTO saga_events ({columns}) SELECT saga_id, seq, type, schema_version, "
            "'{}', recorded_at, writer, hash FROM saga_events WHERE saga_id = 'b' AND seq = 1",
            f"REPLACE INTO saga_events (position, {columns}) SELECT position, 'new', 1, type, "
            "schema_version, data, recorded_at, writer, hash FROM saga_events "
            "WHERE saga_id = 'c' AND seq = 3",
            f"INSERT OR IGNORE INTO saga_events ({columns}) SELECT saga_id, seq, 'X', "
            "schema_version, data, recorded_at, writer, hash FROM saga_events WHERE saga_id = 'a'",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="saga_events is append-only"):
                db.execute(sql)
            db.rollback()
    finally:
        db.close()
    assert snapshot(url) == before
    assert ok("--db", url, "audit", "verify").startswith("ok: 3 sagas")


def test_moved_timestamps_are_caught_in_every_saga(log: str) -> None:
    with open_store(log) as store:
        _tamper(store, "UPDATE saga_events SET recorded_at = recorded_at - 365 * 86400")
    result = run("--db", log, "audit", "verify")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"tampered: saga {i}: seq 1 was changed, removed or reordered (its hash does not match "
        "the chain)" for i in IDS]


def test_a_moved_hash_version_is_caught(log: str) -> None:
    with open_store(log) as store:
        _tamper(store, "UPDATE saga_events SET hash_version = 1 WHERE saga_id = 'b' AND seq = 2")
    result = run("--db", log, "audit", "verify")
    assert result.returncode == 1 and result.stdout.startswith("tampered: saga b: seq 2 was changed")


def test_a_log_hashed_before_recorded_at_was_still_verifies_and_grows(
    empty_url: str, tmp_path: Path
) -> None:
    """Events hashed without their time (before revision 0003) verify; appends after the upgrade
    chain from them and cover their time."""
    source = f"sqlite:///{tmp_path / 'source.db'}"
    _run(source, *IDS)
    _run(source, "later", drive=False)
    columns = ["saga_id", "seq", "type", "schema_version", "data", "recorded_at", "writer"]
    src = sa.create_engine(source, poolclass=sa.NullPool)
    with src.connect() as conn:
        old_events = [r._asdict() for r in conn.execute(sa.text(
            f"SELECT {', '.join(columns)} FROM saga_events ORDER BY position"))]
        old_sagas = [r._asdict() for r in conn.execute(sa.text("SELECT * FROM sagas"))]
    src.dispose()
    previous: dict[str, str | None] = {}
    for row in old_events:
        data = row["data"] if isinstance(row["data"], dict) else json.loads(row["data"])
        row["data"] = data
        row["hash"] = previous[row["saga_id"]] = event_hash(
            row["saga_id"], row["seq"], row["type"], row["schema_version"], data,
            previous.get(row["saga_id"]))
    engine = sa.create_engine(empty_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:  # the log as revision 0002 wrote it
            migrate.upgrade(conn, "0002")
            old = sa.MetaData()
            old.reflect(conn)
            conn.execute(old.tables["sagas"].insert(), old_sagas)
            conn.execute(old.tables["saga_events"].insert(), old_events)
    finally:
        engine.dispose()
    assert run("--db", empty_url, "db", "upgrade").returncode == 0
    assert ok("--db", empty_url, "audit", "verify").startswith("ok: 4 sagas")
    head = ok("--db", empty_url, "audit", "head").strip()
    with open_store(empty_url) as store:  # the saga left running goes on after the upgrade
        Coordinator(store, [_trip()], clock=VirtualClock(), poll_interval=60.0).work(until_idle=True)
        assert store.summary("later").status.value == "completed"
    assert ok("--db", empty_url, "audit", "verify", "--head", head).startswith("ok: 4 sagas")
    with open_store(empty_url) as store:
        _tamper(store, "UPDATE saga_events SET recorded_at = recorded_at + 60 "
                       "WHERE saga_id = 'later' AND seq = 3")
    result = run("--db", empty_url, "audit", "verify")
    assert result.returncode == 1 and result.stdout == (
        "tampered: saga later: seq 3 was changed, removed or reordered (its hash does not match "
        "the chain)\n")


def test_sagas_written_in_bulk_have_their_times_hashed(sql_url: str) -> None:
    from saga import SagaStatus
    from saga import events as ev
    from saga.store.loading import BulkSaga, write_sagas

    at = datetime(2030, 1, 1, 12, 0, 0, 123457, tzinfo=UTC)
    with open_store(sql_url) as store:
        assert isinstance(store, SqlEventStore)
        write_sagas(store, [BulkSaga(f"s{i}", "big", 1, SagaStatus.COMPLETED, [
            ev.SagaStarted(name="big", version=1, at=at),
            ev.SagaCompleted(at=at + timedelta(seconds=i))]) for i in range(3)])
    assert ok("--db", sql_url, "audit", "verify").startswith("ok: 3 sagas, 6 events")
    with open_store(sql_url) as store:
        _tamper(store, "UPDATE saga_events SET recorded_at = recorded_at + 0.001 "
                       "WHERE saga_id = 's1' AND seq = 2")
    result = run("--db", sql_url, "audit", "verify")
    assert result.returncode == 1 and result.stdout.startswith("tampered: saga s1: seq 2 was changed")


# -- 11: every tampered saga is named --------------------------------------------------------------


_EDIT = {
    "sqlite": "UPDATE saga_events SET data = json_set(data, '$.attempt', 9) "
              "WHERE saga_id = 'a' AND seq = 3",
    "postgresql": "UPDATE saga_events "
                  "SET data = CAST(jsonb_set(CAST(data AS jsonb), '{attempt}', '9') AS json) "
                  "WHERE saga_id = 'a' AND seq = 3",
}


def test_verify_names_each_tampered_saga(log: str) -> None:
    with open_store(log) as store:
        dialect = sa.make_url(log).get_dialect().name
        _tamper(store, _EDIT[dialect], "DELETE FROM saga_events WHERE saga_id = 'c' AND seq = 2")
    result = run("--db", log, "audit", "verify")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "tampered: saga a: seq 3 was changed, removed or reordered (its hash does not match the "
        "chain)",
        "tampered: saga c: seq 2 is missing (the next row has seq 3)",
    ]



_RELAID = {
    # the same JSON value, laid out differently: a space after each colon
    "sqlite": "UPDATE saga_events SET data = replace(data, '\":', '\": ') "
              "WHERE saga_id = 'a' AND seq = 3",
    # keys reordered and spaced as jsonb writes them
    "postgresql": "UPDATE saga_events SET data = CAST(CAST(data AS jsonb) AS json) "
                  "WHERE saga_id = 'a' AND seq = 3",
}


def test_the_hash_covers_the_data_exactly_as_stored(log: str) -> None:
    with open_store(log) as store:
        dialect = sa.make_url(log).get_dialect().name
        before = store.load("a")[2].data
        _tamper(store, _RELAID[dialect])
        assert store.load("a")[2].data == before  # the same value, other bytes
    result = run("--db", log, "audit", "verify")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "tampered: saga a: seq 3 was changed, removed or reordered (its hash does not match the "
        "chain)"]


def test_a_head_says_what_it_covers_in_english() -> None:
    digest = "0" * 64
    assert Head.parse(f"2:7:1:1:{digest}").describe() == "1 saga with 1 event"
    assert Head.parse(f"2:9:2:5:{digest}").describe() == "2 sagas with 5 events"

"""The log as data, through the store and the command line: hash chains, the attempts table and
failed steps kept on append, the filtered list with its cursor, statistics, export, and the audit
catching rows changed behind the store's back (with raw SQL), on every backend."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from saga import Coordinator, EventStore, StoredEvent, VirtualClock
from saga.cli.command import main
from saga.inspection.history import timeline
from saga.store.audit import Head, HeadBuilder
from saga.store.hashing import stored_event_hash, stored_text
from saga.store.schema import attempts
from saga.store.sql import SqlEventStore
from tests.helpers import WorkerDied
from tests.test_stats import _order, _trip, check, python_stats

N_TRIPS = 16
N_ORDERS = 6


Built = tuple[EventStore, datetime, list[str]]


@pytest.fixture
def built(store_url: str) -> Iterator[Built]:
    """Trips and orders that retry, time out, lose a worker, fail and compensate; the store, the
    time between two halves of the starts, and every saga id (on every backend)."""
    yield from _build(store_url)


@pytest.fixture
def built_sql(sql_url: str) -> Iterator[Built]:
    """The same log, on SQLite and PostgreSQL."""
    yield from _build(sql_url)


def _build(url: str) -> Iterator[Built]:
    clock = VirtualClock()
    die = {"t-4"}
    store = EventStore(url)

    def coordinator() -> Coordinator:
        return Coordinator(store, [_trip(clock, die), _order(clock)], clock=clock, lease=10.0,
                           poll_interval=60.0)

    c = coordinator()
    ids: list[str] = []
    middle = clock.now()
    for i in range(N_TRIPS):
        ids.append(c.start("trip", None, saga_id=f"t-{i}"))
        clock.advance(1.0)
        if i == N_TRIPS // 2:
            clock.advance(3600)
            middle = clock.now()
    for i in range(N_ORDERS):
        ids.append(c.start("order", None, saga_id=f"o-{i}"))
        clock.advance(1.0)
    for _ in range(12):
        try:
            c.work(until_idle=True)
        except WorkerDied:
            clock.advance(11.0)
            c = coordinator()
        clock.advance(2.5)
    yield store, middle, ids
    store.close()


def _events(store: EventStore, ids: list[str]) -> dict[str, list[StoredEvent]]:
    return {i: store.load(i) for i in ids}


def _cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--db", url, *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- the chain ------------------------------------------------------------------------------------


def test_every_event_is_chained_to_the_previous_one_of_its_saga(
    built: Built,
) -> None:
    store, _, ids = built
    logs = _events(store, ids)
    heads = []
    for saga_id, log in logs.items():
        previous = None
        for e in log:
            previous = stored_event_hash(saga_id, e.seq, e.type, e.schema_version,
                                         stored_text(e.data), previous, e.recorded_at.timestamp())
            assert e.hash == previous, (saga_id, e.seq)
        heads.append((saga_id, log[-1].seq, log[-1].hash))
    report = store.verify()
    assert report.ok, report.summary()
    assert (report.sagas, report.events) == (len(ids), sum(len(v) for v in logs.values()))
    expected = HeadBuilder()
    for h in sorted(heads):
        expected.add(*h)
    top = max(e.position or 0 for log in logs.values() for e in log)
    assert store.head() == expected.head(top) == report.head
    assert store.verify(head=report.head).ok
    assert store.verify("t-3").sagas == 1


def test_a_new_store_object_chains_from_the_log_not_from_its_cache(sql_url: str) -> None:
    from saga import SagaStatus
    from saga import events as ev

    t = datetime(2030, 1, 1).astimezone()
    with EventStore(sql_url) as first:
        first.create("s", [ev.SagaStarted(name="n", version=1, at=t)], name="n", version=1,
                     status=SagaStatus.RUNNING, wake_at=None, now=t)
    with EventStore(sql_url) as second:  # no load first: the previous hash is read in the append
        second.append("s", 1, [ev.SagaCompleted(at=t)], status=SagaStatus.COMPLETED, wake_at=None,
                      now=t)
        assert second.verify().ok
        assert len({e.hash for e in second.load("s")}) == 2


# -- what the append keeps beside the events ---------------------------------------------------------


def test_the_attempts_table_and_failed_step_follow_the_events(
    built_sql: Built,
) -> None:
    store, _, ids = built_sql
    assert isinstance(store, SqlEventStore)
    logs = _events(store, ids)
    store.catch_up()
    with store.engine.connect() as conn:
        kept = {(r.saga_id, bool(r.compensation), r.step, r.attempt): r
                for r in conn.execute(sa.select(attempts))}
        failed: dict[str, str | None] = {
            r.saga_id: r.failed_step
            for r in conn.execute(sa.text("SELECT saga_id, failed_step FROM sagas"))}
    expected = {}
    for saga_id, log in logs.items():
        for a in timeline(saga_id, log).attempts:
            expected[(saga_id, a.compensation, a.step, a.attempt)] = a
        steps = [e.data["step"] for e in log if e.type == "StepFailed"]
        assert failed[saga_id] == (steps[-1] if steps else None)
    assert set(kept) == set(expected)
    assert {a.outcome for a in expected.values()} == {"succeeded", "failed", "timed_out", "lost"}
    for key, a in expected.items():
        row = kept[key]
        assert (row.outcome, row.error_type) == (a.outcome, a.error_type), key
        assert a.started_at is not None
        assert row.started_at == pytest.approx(a.started_at.timestamp(), abs=1e-6)
        if a.outcome in ("running", "lost"):
            assert row.duration is None
        else:
            assert a.ended_at is not None
            assert row.duration == pytest.approx((a.ended_at - a.started_at).total_seconds(), abs=1e-6)
    assert any(v is not None for v in failed.values())


# -- list ---------------------------------------------------------------------------------------------


def _expected_list(store: EventStore, ids: list[str], **f: Any) -> list[str]:
    rows = []
    for saga_id in ids:
        s = store.summary(saga_id)
        log = store.load(saga_id)
        failed = [e.data["step"] for e in log if e.type == "StepFailed"]
        errors = {e.data["error_type"] for e in log if e.type.endswith("AttemptFailed")}
        if (f.get("status") not in (None, s.status.value) or f.get("name") not in (None, s.name)
                or (f.get("failed_step") is not None and (failed[-1:] != [f["failed_step"]]))
                or (f.get("error_type") is not None and f["error_type"] not in errors)
                or (f.get("since") is not None and s.created_at < f["since"])
                or (f.get("until") is not None and s.created_at >= f["until"])):
            continue
        rows.append((s.created_at, saga_id))
    return [i for _, i in sorted(rows, reverse=True)]


def _all_pages(store: EventStore, limit: int, **f: Any) -> list[str]:
    got: list[str] = []
    cursor = None
    while True:
        page = store.list_sagas(limit=limit, cursor=cursor, **f)
        assert len(page.rows) <= limit
        got += [r.saga_id for r in page.rows]
        if page.cursor is None:
            return got
        cursor = page.cursor


def test_list_filters_newest_first_and_pages_with_a_cursor(
    built: Built,
) -> None:
    store, middle, ids = built
    cases: list[dict[str, Any]] = [
        {}, {"status": "compensated"}, {"status": "running"}, {"name": "order"},
        {"failed_step": "charge"}, {"error_type": "ConnectionError"}, {"error_type": "AttemptTimedOut"},
        {"since": middle}, {"until": middle}, {"name": "trip", "since": middle - timedelta(seconds=5),
                                               "until": middle + timedelta(seconds=3)},
        {"status": "compensated", "failed_step": "charge", "error_type": "PermanentError"},
    ]
    nonempty = 0
    for f in cases:
        want = _expected_list(store, ids, **f)
        nonempty += bool(want)
        assert [r.saga_id for r in store.list_sagas(limit=100, **f).rows] == want, f
        assert _all_pages(store, 3, **f) == want, f
    assert nonempty >= len(cases) - 1
    first = store.list_sagas(limit=2)
    assert first.cursor is not None and len(first.rows) == 2
    rows = store.list_sagas(limit=1, name="order").rows
    assert rows[0].to_json() == {
        "id": rows[0].saga_id, "name": "order", "status": store.summary(rows[0].saga_id).status.value,
        "started_at": store.summary(rows[0].saga_id).created_at.isoformat(),
        "updated_at": store.summary(rows[0].saga_id).updated_at.isoformat(), "failed_step": None,
        "parked": None,
    }


def test_list_on_the_command_line(
    built_sql: Built, capsys: pytest.CaptureFixture[str],
) -> None:
    store, middle, ids = built_sql
    code, out, err = _cli(capsys, store.url, "list", "--json", "--status", "compensated",
                          "--since", middle.isoformat(), "--limit", "1")
    assert code == 0
    want = _expected_list(store, ids, status="compensated", since=middle)
    assert len(want) >= 2
    assert [json.loads(line)["id"] for line in out.splitlines()] == want[:1]
    assert set(json.loads(out.splitlines()[0])) == {"id", "name", "status", "started_at",
                                                    "updated_at", "failed_step", "parked"}
    cursor = err.split("--cursor ")[1].strip()
    code, out, _ = _cli(capsys, store.url, "list", "--json", "--status", "compensated",
                        "--since", middle.isoformat(), "--limit", "50", "--cursor", cursor)
    assert [json.loads(line)["id"] for line in out.splitlines()] == want[1:]
    code, out, _ = _cli(capsys, store.url, "list", "--failed-step", "charge")
    assert code == 0 and all("failed at charge" in line for line in out.splitlines()) and out


@pytest.mark.parametrize(("args", "message"), [
    (("list", "--cursor", "nonsense!"), "is not a cursor from a previous page"),
    (("list", "--since", "yesterday"), "--since: expected an ISO 8601 date"),
    (("list", "--since", "1d", "--until", "2d"), "nothing can match"),
    (("list", "--status", "bogus"), "unknown status 'bogus'"),
    (("stats", "--since", "soon"), "--since: expected"),
    (("audit", "verify", "--head", "abc"), "expected a head as `saga audit head` prints it"),
    (("audit", "verify", "t-1", "--head", "0" * 64), "--head covers the whole log"),
])
def test_bad_input_is_one_line_and_writes_nothing(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str,
) -> None:
    EventStore(sqlite_url).close()
    code, out, err = _cli(capsys, sqlite_url, *args)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and message in err, err


def test_reading_commands_create_no_database(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    for args in (["stats"], ["export"], ["audit", "verify"], ["audit", "head"], ["list", "--json"]):
        code, _, err = _cli(capsys, url, *args)
        assert code == 1 and "no database at" in err
    assert not (tmp_path / "none.db").exists()


# -- stats ---------------------------------------------------------------------------------------------


def test_stats_on_the_command_line_equal_counts_made_from_the_events(
    built: Built, capsys: pytest.CaptureFixture[str],
) -> None:
    store, middle, ids = built
    check(store.stats(), python_stats(store, ids))
    check(store.stats(name="trip", since=middle), python_stats(store, ids, name="trip",
                                                               since=middle))
    if store.url == "memory://":  # the command line reads a database
        return
    code, out, _ = _cli(capsys, store.url, "stats", "--json")
    assert code == 0
    assert json.loads(out) == json.loads(json.dumps(store.stats().to_json()))
    code, out, _ = _cli(capsys, store.url, "stats", "--name", "trip")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["saga", "completed", "compensated", "failed", "running"]
    counts = store.stats(name="trip").sagas["trip"]
    assert lines[1].split() == ["trip", str(counts.completed), str(counts.compensated),
                                str(counts.failed), str(counts.running)]
    assert any(line.startswith("trip/charge ") for line in lines)


# -- export --------------------------------------------------------------------------------------------


def test_export_writes_every_event_as_json_lines_and_csv(
    built: Built, capsys: pytest.CaptureFixture[str], tmp_path: Any,
) -> None:
    store, _, ids = built
    logs = _events(store, ids)
    want = {(e.saga_id, e.seq): e for log in logs.values() for e in log}
    rows = [r.to_json() for r in store.export()]
    assert len(rows) == len(want)
    for r in rows:
        e = want[(r["saga_id"], r["seq"])]
        assert (r["type"], r["data"], r["hash"], r["recorded_at"]) == (
            e.type, e.data, e.hash, e.recorded_at.isoformat())
    times = sorted(e.recorded_at for e in want.values())
    # a boundary well between two events (a stored time is finer than a datetime's microsecond)
    k = next(k for k in range(len(times) // 2, len(times)) if times[k] - times[k - 1] > timedelta(
        microseconds=20))
    later = times[k] - timedelta(microseconds=10)
    assert {(r.saga_id, r.seq) for r in store.export(since=later)} == {
        k for k, e in want.items() if e.recorded_at >= later}
    if store.url == "memory://":  # the command line reads a database
        return
    out_file = tmp_path / "log.jsonl"
    code, out, err = _cli(capsys, store.url, "export", "--output", str(out_file))
    assert code == 0 and out == "" and f"{len(want)} events written" in err
    assert [json.loads(line) for line in out_file.read_text().splitlines()] == rows
    code, out, _ = _cli(capsys, store.url, "export", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert list(table[0]) == ["saga_id", "seq", "type", "recorded_at", "data", "hash"]
    assert [(t["saga_id"], int(t["seq"]), t["type"], t["recorded_at"], json.loads(t["data"]), t["hash"])
            for t in table] == [(r["saga_id"], r["seq"], r["type"], r["recorded_at"], r["data"], r["hash"])
                                for r in rows]


def test_export_streams_in_flat_memory(sqlite_url: str) -> None:
    import tracemalloc

    from saga import SagaStatus
    from saga import events as ev
    from saga.store.loading import BulkSaga, write_sagas

    t = datetime(2030, 1, 1).astimezone()
    blob = "x" * 2000

    def sagas(n: int, offset: int) -> Iterator[BulkSaga]:
        for i in range(offset, offset + n):
            yield BulkSaga(f"s{i:06d}", "big", 1, SagaStatus.COMPLETED, [
                ev.SagaStarted(name="big", version=1, input={"blob": blob}, at=t),
                *(ev.StepAttemptStarted(step=f"k{j}", attempt=1, at=t) for j in range(4)),
                ev.SagaCompleted(at=t)])

    def peak(store: EventStore) -> tuple[int, int]:
        tracemalloc.start()
        n = sum(1 for _ in store.export(batch=200))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return n, top

    with EventStore(sqlite_url) as store:
        assert isinstance(store, SqlEventStore)
        write_sagas(store, sagas(1000, 0))
        n1, small = peak(store)
        write_sagas(store, sagas(4000, 1000))
        n2, large = peak(store)
    assert (n1, n2) == (6000, 30000)
    assert large < 2 * small + 1_000_000, (small, large)  # five times the log, not five times the memory
    assert large < 10_000_000  # the log holds over 10 MB of input alone


# -- tampering -----------------------------------------------------------------------------------------


def _tamper(store: EventStore, *statements: str) -> None:
    """Run raw SQL with the append-only triggers out of the way (as a superuser could)."""
    assert isinstance(store, SqlEventStore)
    engine = sa.create_engine(store.url, poolclass=sa.NullPool)
    pg = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if pg:
            conn.exec_driver_sql("ALTER TABLE saga_events DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS saga_events_append_only_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS saga_events_append_only_delete")
        for sql in statements:
            conn.exec_driver_sql(sql)
        if pg:
            conn.exec_driver_sql("ALTER TABLE saga_events ENABLE TRIGGER USER")
    engine.dispose()


_CHANGE_DATA = {
    "sqlite": "UPDATE saga_events SET data = json_set(data, '$.attempt', 9) "
              "WHERE saga_id = 't-5' AND seq = 3",
    "postgresql": "UPDATE saga_events "
                  "SET data = CAST(jsonb_set(CAST(data AS jsonb), '{attempt}', '9') AS json) "
                  "WHERE saga_id = 't-5' AND seq = 3",
}


@pytest.mark.parametrize(("case", "named"), [
    ("edit", "saga t-5: seq 3 was changed"),
    ("delete", "saga t-5: seq 3 is missing"),
    ("swap", "saga t-5: seq 3 was changed"),
    ("cut", "saga t-5: seq {last} is missing"),
])
def test_verify_names_the_saga_and_seq_that_was_tampered_with(
    built_sql: Built, capsys: pytest.CaptureFixture[str],
    case: str, named: str,
) -> None:
    store, _, _ = built_sql
    assert isinstance(store, SqlEventStore)
    last = store.summary("t-5").last_seq
    code, out, _ = _cli(capsys, store.url, "audit", "head")
    head = out.strip()
    assert code == 0 and str(Head.parse(head)) == head
    dialect = store.engine.dialect.name
    statements = {
        "edit": [_CHANGE_DATA[dialect]],
        "delete": ["DELETE FROM saga_events WHERE saga_id = 't-5' AND seq = 3"],
        "swap": ["UPDATE saga_events SET seq = -1 WHERE saga_id = 't-5' AND seq = 3",
                 "UPDATE saga_events SET seq = 3 WHERE saga_id = 't-5' AND seq = 4",
                 "UPDATE saga_events SET seq = 4 WHERE saga_id = 't-5' AND seq = -1"],
        "cut": [f"DELETE FROM saga_events WHERE saga_id = 't-5' AND seq = {last}"],
    }[case]
    _tamper(store, *statements)
    for args in (["audit", "verify"], ["audit", "verify", "t-5"], ["audit", "verify", "--head", head]):
        code, out, _ = _cli(capsys, store.url, *args)
        assert code == 1, (args, out)
        lines = out.splitlines()
        assert named.format(last=last) in lines[0], out
        # the cut is also a log that differs from the head, said on a line of its own
        assert len(lines) == (2 if case == "cut" and "--head" in args else 1), out
    code, out, _ = _cli(capsys, store.url, "audit", "verify", "t-6")
    assert code == 0 and out == f"ok: 1 saga, {store.summary('t-6').last_seq} events verified\n"


def test_a_saga_cut_short_with_its_index_row_or_deleted_whole_is_caught_by_the_head(
    built_sql: Built, capsys: pytest.CaptureFixture[str],
) -> None:
    store, _, ids = built_sql
    head = str(store.head())
    last = store.summary("t-2").last_seq
    _tamper(store, f"DELETE FROM saga_events WHERE saga_id = 't-2' AND seq = {last}",
            f"UPDATE sagas SET last_seq = {last - 1} WHERE saga_id = 't-2'")
    code, out, _ = _cli(capsys, store.url, "audit", "verify")
    assert code == 0 and out.startswith(f"ok: {len(ids)} sagas")  # no chain inside can show it
    code, out, _ = _cli(capsys, store.url, "audit", "verify", "--head", head)
    assert code == 1 and "the log differs from the head" in out
    head = str(store.head())
    _tamper(store, "DELETE FROM saga_events WHERE saga_id = 'o-1'", "DELETE FROM sagas WHERE saga_id = 'o-1'")
    code, out, _ = _cli(capsys, store.url, "audit", "verify")
    assert code == 0 and out.startswith(f"ok: {len(ids) - 1} sagas")
    code, out, _ = _cli(capsys, store.url, "audit", "verify", "--head", head)
    assert code == 1 and "the log differs from the head" in out
    _tamper(store, "DELETE FROM saga_events WHERE saga_id = 'o-2'")  # the index row stays
    code, out, _ = _cli(capsys, store.url, "audit", "verify")
    assert code == 1 and "saga o-2: seq 1 is missing" in out


def test_sqlite_refuses_to_update_or_delete_events(sqlite_url: str) -> None:
    from saga import SagaStatus
    from saga import events as ev

    t = datetime(2030, 1, 1).astimezone()
    with EventStore(sqlite_url) as store:
        store.create("s", [ev.SagaStarted(name="n", version=1, at=t)], name="n", version=1,
                     status=SagaStatus.RUNNING, wake_at=None, now=t)
        assert isinstance(store, SqlEventStore)
        for sql in ("UPDATE saga_events SET type = 'X'", "DELETE FROM saga_events"):
            with pytest.raises(sa.exc.IntegrityError, match="saga_events is append-only"), \
                    store.engine.begin() as conn:
                conn.exec_driver_sql(sql)
        assert [e.type for e in store.load("s")] == ["SagaStarted"]

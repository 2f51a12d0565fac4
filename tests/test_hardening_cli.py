"""The ``saga`` command against hostile and careless input, run as a real process: JSON options
that cannot be stored, simulated latencies that cannot be drawn, passwords in a URL's query,
bulk dry runs, and what the command line prints (plurals, articles, columns, escapes)."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from saga import EventStore, VirtualClock
from saga.operators.bulk import Filters, select
from tests.cli_run import SAGA, error_line, ok, run
from tests.fixtures import ops_sagas
from tests.helpers import snapshot
from tests.ui_log import free_port

ORDERS = "tests.fixtures.cli_sagas"
SHIPMENT = "tests.fixtures.ops_sagas:shipment"
SIMULATED = "tests.fixtures.simulate_sagas"
SECRET = "hunter2"


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'saga.db'}"


def _start(url: str, target: str, name: str, value: object, saga_id: str) -> None:
    ok("--db", url, "start", target, name, "--input", json.dumps(value), "--id", saga_id)


# -- 17: every option that reads JSON refuses what the log cannot store, in one line ----------

_DEEP = "[" * 100_000 + "]" * 100_000
_HOSTILE: dict[str, bytes] = {
    "nested past the recursion limit": _DEEP.encode(),
    "nested past what the log stores": ("[" * 300 + "]" * 300).encode(),
    "an int of 5,000 digits": b'{"sku": "pen", "quantity": ' + b"7" * 5000 + b"}",
    "not UTF-8": b'{"sku": "\xff\xfe", "quantity": 1}',
    "NaN": b'{"sku": "pen", "quantity": NaN}',
}
_SAYS = {
    "nested past the recursion limit": "nested more than 200 levels deep",
    "nested past what the log stores": "nested more than 200 levels deep",
    "an int of 5,000 digits": "an int of more than 4300 digits",
    "not UTF-8": "is not UTF-8",
    "NaN": "NaN is not a JSON number",
}
_COMMANDS = {
    "start": ("start", ORDERS, "place-order", "--input"),
    "skip": ("skip", SHIPMENT, "stuck-1", "charge", "--result"),
    "fork": ("fork", SHIPMENT, "stuck-1", "--from", "charge", "--input"),
}


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_json_options_refuse_what_cannot_be_stored_in_one_line(tmp_path: Path, command: str) -> None:
    url = _sqlite(tmp_path)
    _start(url, SHIPMENT, "shipment", {"sku": "flaky"}, "stuck-1")
    ok("--db", url, "worker", SHIPMENT, "--until-idle")  # charge waits an hour for its retry
    before = snapshot(url)
    *args, option = _COMMANDS[command]
    for what, text in _HOSTILE.items():
        value = tmp_path / "value.json"
        value.write_bytes(text)
        line = error_line("--db", url, *args, option, f"@{value}")
        assert option in line and _SAYS[what] in line, (what, line)
        if len(text) < 100_000:  # the same text given inline (argv is bytes: not UTF-8 too)
            line = error_line("--db", url, *args, option, text.decode("utf-8", "surrogateescape"))
            assert option in line, (what, line)
    assert snapshot(url) == before


@pytest.mark.parametrize("latency", [
    "lognormal:0,1e308", "lognormal:1e308,0", "lognormal:700,10", "lognormal:0,40",
    "exp:1e308", "fixed:1e308", "uniform:0,1e308",
])
def test_simulate_refuses_latencies_it_cannot_draw_in_one_line(latency: str) -> None:
    line = error_line("simulate", SIMULATED, "trip", "--runs", "3",
                      "--latency", f"book_flight={latency}")
    assert line.startswith(f"saga: error: --latency 'book_flight={latency}': "), line


def test_simulate_refuses_a_timeout_it_cannot_represent_and_keeps_heavy_tails() -> None:
    line = error_line("simulate", SIMULATED, "trip", "--runs", "3", "--timeout", "book_flight=1e300")
    assert line.startswith("saga: error: --timeout 'book_flight=1e300': "), line
    out = ok("simulate", SIMULATED, "trip", "--runs", "20", "--latency", "book_flight=lognormal:0,2")
    assert out.startswith("trip: 20 runs")


# -- 18: a password in a URL's query is never printed -----------------------------------------


def _with_password(url: str) -> str:
    return f"{url}?password={SECRET}&sslpassword={SECRET}x"


def test_errors_mask_a_password_given_in_the_query(tmp_path: Path) -> None:
    refused = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"
    line = error_line("--db", _with_password(refused), "list")
    assert "cannot open the database at" in line and "password=***" in line
    assert SECRET not in line
    bad_port = _with_password("postgresql+psycopg://postgres@127.0.0.1:port/x")
    line = error_line("--db", bad_port, "list")
    assert "not a database URL" in line and "password=***" in line
    assert SECRET not in line


def test_db_upgrade_and_ui_mask_a_password_given_in_the_query(sql_url: str, tmp_path: Path) -> None:
    # URLs short enough to be shown whole: the password is not cut off by chance
    parsed = sa.make_url(sql_url)
    url = _with_password("sqlite:///saga.db" if parsed.get_backend_name() == "sqlite" else
                         f"{parsed.drivername}://{parsed.username}@{parsed.host}/{parsed.database}")
    upgraded = run("--db", url, "db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "schema revision" in upgraded.stdout and "password=***" in upgraded.stdout
    assert SECRET not in upgraded.stdout + upgraded.stderr
    proc = subprocess.Popen([SAGA, "--db", url, "ui", "--port", str(free_port())], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while line and "saga ui: serving" not in line:  # SQLite warns of an unknown argument
            line = proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=20)
    assert "saga ui: serving" in line and "password=***" in line, line + rest
    assert SECRET not in line + rest


# -- 21: a bulk dry run lists only the sagas the request would change --------------------------


def _mixed(url: str) -> None:
    """Two running sagas (one already cancelled), one completed, one compensated, two failed."""
    for sku, saga_id in (("flaky", "run-1"), ("flaky", "run-2"), ("book", "done-1"),
                         ("declined", "undone-1"), ("stuck-undo", "failed-1"),
                         ("stuck-undo", "failed-2")):
        _start(url, SHIPMENT, "shipment", {"sku": sku}, saga_id)
    ok("--db", url, "worker", SHIPMENT, "--until-idle")
    ok("--db", url, "cancel", "run-2")


def test_bulk_dry_run_lists_and_counts_only_the_sagas_it_would_change(sql_url: str) -> None:
    _mixed(sql_url)
    before = snapshot(sql_url)
    cancel = ok("--db", sql_url, "cancel", "--name", "shipment", "--dry-run").splitlines()
    assert cancel == ["run-1", "dry run: 1 saga would be cancelled; nothing was written"]
    retry = ok("--db", sql_url, "retry", "--name", "shipment", "--dry-run").splitlines()
    assert sorted(retry[:-1]) == ["failed-1", "failed-2"]
    assert retry[-1] == "dry run: 2 sagas would be retried; nothing was written"
    none = ok("--db", sql_url, "retry", "--status", "completed", "--dry-run").splitlines()
    assert none == ["dry run: 0 sagas would be retried; nothing was written"]
    assert snapshot(sql_url) == before
    real = ok("--db", sql_url, "cancel", "--name", "shipment")
    assert real == "run-1: cancelled\n1 acted on, 0 skipped\n"


def test_bulk_select_for_a_request_on_every_store(store_url: str) -> None:
    from saga import Coordinator

    clock = VirtualClock()
    with EventStore(store_url) as store, Coordinator(store, [ops_sagas.shipment],
                                                     clock=clock) as c:
        c.start("shipment", {"sku": "book"}, saga_id="run-1")  # not driven: running
        for sku, saga_id in (("book", "done-1"), ("declined", "undone-1"),
                             ("stuck-undo", "failed-1")):
            c.run(c.start("shipment", {"sku": sku}, saga_id=saga_id))
        everything = Filters(name="shipment")
        assert set(select(store, everything)) == {"run-1", "done-1", "undone-1", "failed-1"}
        assert list(select(store, everything, "cancel")) == ["run-1"]
        assert list(select(store, everything, "retry")) == ["failed-1"]
        c.cancel("run-1")
        assert list(select(store, everything, "cancel")) == []


# -- 25: what the command line prints ----------------------------------------------------------


def test_counts_and_articles_read_as_english(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    _start(url, ORDERS, "place-order", {"sku": "book", "quantity": 1}, "o-1")
    worker = run("--db", url, "worker", ORDERS, "--until-idle")
    assert worker.returncode == 0 and worker.stderr.splitlines()[-1].endswith(": 1 drive")
    assert ok("--db", url, "audit", "verify", "o-1").startswith("ok: 1 saga, ")
    _start(url, SIMULATED, "exponential", None, "e-1")
    line = error_line("--db", url, "start", SIMULATED, "trip", "--input", '{"traveller": "x"}',
                      "--id", "e-1")
    assert "already used by an exponential saga" in line, line
    shipments = f"sqlite:///{tmp_path / 'shipments.db'}"
    _start(shipments, SHIPMENT, "shipment", {"sku": "flaky"}, "s-1")
    ok("--db", shipments, "worker", SHIPMENT, "--until-idle")
    check = run("--db", shipments, "check", "tests.fixtures.ops_sagas:renamed")
    assert check.returncode == 1 and check.stdout.splitlines()[-1] == (
        "1 saga in flight cannot continue")


def test_simulate_help_shows_one_percent_sign() -> None:
    out = ok("simulate", "--help")
    assert "95% intervals" in " ".join(out.split()) and "%%" not in out


def test_list_columns_line_up(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    _start(url, ORDERS, "place-order", {"sku": "book", "quantity": 1}, "a")
    _start(url, SHIPMENT, "shipment", {"sku": "declined"}, "a-much-longer-id")
    _start(url, ORDERS, "place-order", {"sku": "book", "quantity": 1}, "mid-size")
    ok("--db", url, "worker", ORDERS, SHIPMENT, "--until-idle")
    lines = ok("--db", url, "list").splitlines()
    assert len(lines) == 3
    columns = {tuple(line.index(word) for word in (line.split()[1], line.split()[3], "started",
                                                    "updated")) for line in lines}
    assert len(columns) == 1, lines


def test_export_escapes_what_a_terminal_would_obey(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    sku = "pen\u202eevil\x9b31m"
    _start(url, SHIPMENT, "shipment", {"sku": sku}, "s-1")
    out = ok("--db", url, "export", "--format", "csv")
    assert "\u202e" not in out and "\x9b" not in out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert json.loads(rows[0]["data"])["input"]["sku"] == sku  # the data is still the same JSON
    lines = ok("--db", url, "export").splitlines()
    assert "\u202e" not in lines[0] and "\x9b" not in lines[0]
    first = json.loads(lines[0])
    assert first["data"]["input"]["sku"] == sku

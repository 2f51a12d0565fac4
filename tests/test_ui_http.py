"""``saga ui`` over HTTP: the JSON API against figures taken from the log, read-only, the Host guard,
escaping, secrets, and the command itself (with and without the ui extra)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from saga import EventStore
from saga.inspection.history import timeline
from saga.inspection.stats import attempts_from_events
from saga.secrets.sealing import redacted
from saga.store.sql import SqlEventStore
from saga.store.sqlstats import compute_stats
from saga.ui import INSTALL_HINT
from saga.ui.data import ListFilters, list_sagas
from saga.ui.params import Query
from tests.cli_run import run
from tests.ui_log import EVIL_ID, EVIL_MESSAGE, HTTP, SECRET, Log, free_port, serving, write_log


@pytest.fixture(scope="module")
def log_url(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Log]:
    url = f"sqlite:///{tmp_path_factory.mktemp('ui') / 'saga.db'}"
    return url, write_log(url)


@pytest.fixture(scope="module")
def base(log_url: tuple[str, Log]) -> Iterator[str]:
    with serving(log_url[0], free_port()) as url:
        yield url


def get(url: str, **kw: Any) -> httpx.Response:
    return HTTP.get(url, timeout=10, **kw)


def _all_events(url: str) -> dict[str, list[Any]]:
    with EventStore(url, schema="require") as store:
        ids = [s.saga_id for s in store.find(limit=1000)]
        return {i: store.load(i) for i in ids}


def test_the_list_is_every_saga_newest_first_with_the_step_that_failed(
    base: str, log_url: tuple[str, Log]
) -> None:
    url, log = log_url
    history = _all_events(url)
    body = get(f"{base}/api/sagas").json()
    got = [r["id"] for r in body["sagas"]]
    started = {i: h[0].event.at for i, h in history.items()}
    assert sorted(got) == sorted(history)
    assert [started[i] for i in got] == sorted(started.values(), reverse=True)
    assert body["next_cursor"] is None
    failed = {r["id"]: r["failed_step"] for r in body["sagas"]}
    expected = {i: next((e.data["step"] for e in reversed(h)
                         if e.type == "StepAttemptFailed" and not e.data["retried"]), None)
                for i, h in history.items()}
    assert failed == expected
    assert failed[log.compensated] == "ship" and failed[log.completed] is None
    assert set(body["sagas"][0]) == {"id", "name", "version", "status", "started_at", "updated_at",
                                     "failed_step"}


@pytest.mark.parametrize(("query", "expected"), [
    ("status=compensated", {"trip-no-stock", EVIL_ID, "trip-cancelled"}),
    ("status=running", {"trip-waiting"}),
    ("name=wallet", {"wallet-1"}),
    ("failed_step=ship", {"trip-no-stock", EVIL_ID}),
    ("error_type=RuntimeError", {"trip-no-stock", EVIL_ID, "trip-cancelled"}),
    ("error_type=TimeoutError", {"trip-cancelled", "trip-waiting"}),
    ("error_type=PermanentError&name=trip&status=compensated", {"trip-no-stock", EVIL_ID}),
    ("since=2030-01-01T00:00:30Z&until=2030-01-01T00:01:30Z", {EVIL_ID, "trip-ok"}),
    ("failed_step=book", set()),
])
def test_the_list_filters_as_saga_list_does(base: str, query: str, expected: set[str]) -> None:
    body = get(f"{base}/api/sagas?{query}").json()
    assert {r["id"] for r in body["sagas"]} == expected


def test_pages_of_the_list_follow_the_cursor_without_repeats_or_gaps(base: str) -> None:
    everything = [r["id"] for r in get(f"{base}/api/sagas").json()["sagas"]]
    seen: list[str] = []
    cursor: str | None = ""
    while cursor is not None:
        body = get(f"{base}/api/sagas", params={"limit": "2", "cursor": cursor}).json()
        assert len(body["sagas"]) <= 2
        seen += [r["id"] for r in body["sagas"]]
        cursor = body["next_cursor"]
    assert seen == everything and len(everything) == 6


def test_the_list_filters_the_same_on_each_database(sql_url: str) -> None:
    log = write_log(sql_url)
    with EventStore(sql_url, schema="require") as store:
        now = datetime.now(UTC)
        def filters(**values: str) -> ListFilters:
            return ListFilters.parse(Query(values.items(), ListFilters.NAMES), now=now)

        page = list_sagas(store, filters(error_type="TimeoutError"))
        assert {r["id"] for r in page.rows} == {log.cancelled, log.waiting}
        page = list_sagas(store, filters(failed_step="ship", limit="1"))
        assert [r["id"] for r in page.rows] == [log.evil] and page.next_cursor is not None
        rest = list_sagas(store, filters(failed_step="ship", cursor=page.next_cursor or ""))
        assert [r["id"] for r in rest.rows] == [log.compensated] and rest.next_cursor is None


@pytest.mark.parametrize("query", ["status=bogus", "since=yesterday-ish", "limit=0", "limit=x",
                                   "cursor=%%%", "since=2030-02-01&until=2030-01-01"])
def test_bad_filters_are_refused_with_one_message(base: str, query: str) -> None:
    r = get(f"{base}/api/sagas?{query}")
    assert r.status_code == 400
    assert r.json()["error"]
    page = get(f"{base}/?{query}")
    assert page.status_code == 400 and "<h1>400</h1>" in page.text


def test_a_saga_is_its_timeline_with_results_and_secrets_masked(base: str, log_url: tuple[str, Log]) -> None:
    url, log = log_url
    history = _all_events(url)
    for saga_id in history:
        body = get(f"{base}/api/sagas/{quote(saga_id, safe='')}").json()
        expected = timeline(saga_id, redacted(history[saga_id])).to_json()  # secrets masked
        assert body["attempts"] == [{**a, "index": i} for i, a in enumerate(expected["attempts"])]
        assert body.pop("page") == {"number": 1, "pages": 1, "size": 100, "attempts": len(body["attempts"])}
        assert {k: v for k, v in body.items() if k != "attempts"} \
            == {k: v for k, v in expected.items() if k != "attempts"}
    trip = get(f"{base}/api/sagas/{log.completed}").json()
    assert [a["result"] for a in trip["attempts"] if a["outcome"] == "succeeded"] \
        == ["booked", "charged", "shipped"]
    cancelled = get(f"{base}/api/sagas/{log.cancelled}").json()
    assert [(o["type"], o["reason"]) for o in cancelled["operator_actions"]] \
        == [("cancel", "customer changed plans")]
    wallet = get(f"{base}/api/sagas/{log.secret}").json()
    assert wallet["attempts"][0]["result"] == {"holder": "Ada", "number": "**********"}
    seq = wallet["attempts"][0]["seq"]
    for path in (f"/api/sagas/{log.secret}", f"/sagas/{log.secret}?seq={seq}",
                 f"/attempt?saga={log.secret}&seq={seq}", f"/api/attempt?saga={log.secret}&seq={seq}"):
        r = get(base + path)
        assert r.status_code == 200 and SECRET not in r.text and "**********" in r.text


def test_an_attempt_is_served_alone_with_its_error(base: str, log_url: tuple[str, Log]) -> None:
    log = log_url[1]
    seq = get(f"{base}/api/sagas/{log.compensated}").json()["attempts"][1]["seq"]
    body = get(f"{base}/api/attempt", params={"saga": log.compensated, "seq": str(seq)}).json()
    assert (body["step"], body["attempt"], body["outcome"], body["error_type"], body["message"]) \
        == ("charge", 1, "failed", "ConnectionError", "bank busy")
    assert body["seq"] == seq and body["id"] == log.compensated
    missing = get(f"{base}/api/attempt", params={"saga": log.compensated, "seq": "999"})
    assert missing.status_code == 400 and "no attempt that starts at seq 999" in missing.json()["error"]
    assert get(f"{base}/api/sagas/nobody").status_code == 404
    assert get(f"{base}/sagas/nobody").status_code == 404


def test_statistics_are_those_saga_stats_computes_with_failure_rates(
    base: str, log_url: tuple[str, Log]
) -> None:
    with EventStore(log_url[0], schema="require") as store:
        assert isinstance(store, SqlEventStore)
        with store.engine.connect() as conn:
            # derived from the events alone, not from the table the store reads
            expected = compute_stats(conn, attempts=attempts_from_events()).to_json()
    body = get(f"{base}/api/stats").json()
    rates = {k: v.pop("failure_rate") for k, v in body["steps"].items()}
    assert body == expected
    charge = expected["steps"]["trip/charge"]
    assert rates["trip/charge"] == (charge["failures"] + charge["timeouts"]) / charge["attempts"] > 0
    assert rates["trip/book"] == 0
    only = get(f"{base}/api/stats?name=wallet").json()
    assert list(only["sagas"]) == ["wallet"]
    page = get(f"{base}/stats").text
    assert 'class="rate"' in page and "trip/charge" in page


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/api/sagas", "/sagas/trip-ok", "/static/htmx.min.js", "/nowhere"])
def test_nothing_but_get_and_head_is_served(
    base: str, log_url: tuple[str, Log], method: str, path: str
) -> None:
    before = _all_events(log_url[0])
    r = HTTP.request(method, base + path, content=b"{}", timeout=10)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    assert _all_events(log_url[0]) == before
    assert HTTP.head(f"{base}/", timeout=10).status_code == 200


def test_foreign_host_headers_are_refused(base: str) -> None:
    port = base.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert get(f"{base}/api/sagas", headers={"Host": host}).status_code == 200, host
    foreign = (f"evil.example:{port}", "evil.example", f"127.0.0.1:{int(port) + 1}", f"localhost.evil:{port}")
    for host in foreign:
        r = get(f"{base}/api/sagas", headers={"Host": host})
        assert r.status_code == 400, host
        assert "sagas" not in r.text


def test_markup_from_the_log_is_shown_as_text(base: str, log_url: tuple[str, Log]) -> None:
    log = log_url[1]
    seq = str(get(f"{base}/api/sagas/{quote(log.evil, safe='')}").json()["attempts"][4]["seq"])
    pages = [get(f"{base}/").text, get(f"{base}/sagas/{quote(log.evil, safe='')}").text,
             get(f"{base}/attempt", params={"saga": log.evil, "seq": seq}).text,
             get(f"{base}/?status=compensated").text]
    for html in pages:
        assert "<script>window.pwned" not in html
        assert "onerror=" not in html.replace("onerror=&#34;", "")
    assert "&lt;script&gt;window.pwned = &#34;id&#34;&lt;/script&gt;" in pages[0]
    assert "&lt;script&gt;window.pwned = &#34;message&#34;&lt;/script&gt;" in pages[2]
    api = get(f"{base}/api/attempt", params={"saga": log.evil, "seq": seq}).json()
    assert api["message"] == EVIL_MESSAGE and api["id"] == EVIL_ID


def test_every_response_carries_a_strict_content_security_policy(base: str) -> None:
    for path in ("/", "/api/sagas", "/static/htmx.min.js", "/nowhere"):
        r = get(base + path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    js = get(f"{base}/static/htmx.min.js")
    assert js.status_code == 200 and "htmx" in js.text


def test_the_list_polls_only_while_a_saga_on_it_runs(base: str) -> None:
    assert 'hx-trigger="every 2s"' in get(f"{base}/").text
    assert 'hx-trigger="every 2s"' in get(f"{base}/rows?status=running").text
    assert "hx-trigger" not in get(f"{base}/?status=completed").text


def _saga_cmd() -> str:
    return str(Path(sys.executable).with_name("saga"))


def test_saga_ui_serves_until_interrupted(log_url: tuple[str, Log]) -> None:
    port = free_port()
    proc = subprocess.Popen([_saga_cmd(), "--db", log_url[0], "ui", "--port", str(port)],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = HTTP.get(f"http://127.0.0.1:{port}/api/sagas", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status_code == 200 and len(r.json()["sagas"]) == 6
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in err


def test_saga_ui_on_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    r = run("--db", f"sqlite:///{db}", "ui", "--port", str(free_port()))
    assert r.returncode == 1 and r.stderr.startswith("saga: error:") and len(r.stderr.splitlines()) == 1
    assert not db.exists()


@pytest.mark.parametrize("argv", [["--port", "0"], ["--port", "70000"], ["--port", "http"]])
def test_saga_ui_refuses_a_bad_port(argv: list[str]) -> None:
    r = run("ui", *argv)
    assert r.returncode == 2 and "--port" in r.stderr


@pytest.mark.parametrize("blocked", ["starlette", "jinja2", "uvicorn"])
def test_without_the_ui_extra_saga_ui_says_what_to_install(tmp_path: Path, blocked: str) -> None:
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] == {blocked!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    db = f"sqlite:///{tmp_path / 'saga.db'}"
    r = subprocess.run([sys.executable, "-m", "saga.cli", "--db", db, "ui"], capture_output=True,
                       text=True, timeout=60, check=False, env=env)
    assert r.returncode == 1
    assert r.stderr == f"saga: error: {INSTALL_HINT}\n"
    assert r.stdout == ""

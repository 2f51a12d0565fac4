"""A saga of 100,000 events: ``saga ui`` serves its timeline a page at a time and an attempt alone,
``saga show --json`` streams it, each in bounded memory; pages of a smaller saga cover it exactly once."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from saga import EventStore, SagaStatus
from saga import events as ev
from saga.inspection.history import timeline
from saga.store.loading import BulkSaga, write_sagas
from saga.store.sql import SqlEventStore
from saga.ui.data import PAGE_ATTEMPTS
from tests.cli_run import SAGA
from tests.test_cli_scale import peak_kib
from tests.ui_log import HTTP, free_port, serving

pytestmark = pytest.mark.xdist_group("ui_paging")  # one worker builds the module's log, once

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FAILURES = 25_000  # a saga of 50,004 events: the whole of it in memory takes over 90 MB


def failing(attempts: int, *, cancel_after: set[int] = frozenset()) -> list[ev.Event]:  # type: ignore[assignment]
    """A saga whose one step failed ``attempts`` times, each retried a second later, then was compensated;
    an operator's cancel request follows each attempt in ``cancel_after``."""
    out: list[ev.Event] = [ev.SagaStarted(name="order", version=1, input={"sku": "a"}, at=T0)]
    at = T0
    for n in range(1, attempts + 1):
        at = T0 + timedelta(seconds=n)
        last = n == attempts
        out.append(ev.StepAttemptStarted(step="reserve", attempt=n, at=at))
        out.append(ev.StepAttemptFailed(
            step="reserve", attempt=n, at=at, error_type="ValueError", message=f"no stock ({n})",
            retried=not last, next_attempt_at=None if last else at + timedelta(seconds=1),
            gave_up="attempts" if last else None))
        if n in cancel_after:
            out.append(ev.SagaCancelRequested(reason=f"cancel {n}", at=at))
    reason = "step reserve failed: ValueError: no stock"
    return [*out, ev.StepFailed(step="reserve", reason=reason, at=at),
            ev.CompensationStarted(reason=reason, step="reserve", at=at), ev.SagaCompensated(at=at)]


def write(url: str, sagas: dict[str, list[ev.Event]]) -> None:
    with EventStore(url) as store:
        assert isinstance(store, SqlEventStore)
        write_sagas(store, (BulkSaga(i, "order", 1, SagaStatus.COMPENSATED, e) for i, e in sagas.items()))


@pytest.fixture(scope="module")
def long_log(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('paging') / 'long.db'}"
    write(url, {"long": failing(FAILURES), "short": failing(1)})
    return url


def _hwm_kib(pid: int) -> int:
    """The peak resident memory of process ``pid`` so far, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1])  # type: ignore[index]


@pytest.fixture(scope="module")
def ui(long_log: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``saga ui`` over the long log, as a process of its own."""
    port = free_port()
    proc = subprocess.Popen([SAGA, "--db", long_log, "ui", "--port", str(port)], stderr=subprocess.PIPE,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            HTTP.get(f"{base}/api/sagas", timeout=2)
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    try:
        yield base, proc
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def get(url: str, **params: str) -> httpx.Response:
    r = HTTP.get(url, params=params, timeout=120)
    assert r.status_code == 200, r.text[:1000]
    return r


def test_a_long_saga_is_served_a_page_at_a_time_in_bounded_memory(
    ui: tuple[str, subprocess.Popen[str]],
) -> None:
    base, proc = ui
    get(f"{base}/sagas/short")
    small = _hwm_kib(proc.pid)
    first = get(f"{base}/sagas/long").text
    assert len(first) < 400_000  # the whole timeline was 55 MB of HTML
    pages = FAILURES // PAGE_ATTEMPTS
    assert 'href="/sagas/long?page=2"' in first and "page=0" not in first
    assert f"page 1 of {pages:,}" in first
    last = get(f"{base}/sagas/long", page=str(pages)).text
    assert f'href="/sagas/long?page={pages - 1}"' in last and f"page={pages + 1}" not in last
    assert f"no stock ({FAILURES})" in last and "no stock (1)<" not in last

    data = get(f"{base}/api/sagas/long", page="2").json()
    assert data["page"] == {"number": 2, "pages": pages, "size": PAGE_ATTEMPTS, "attempts": FAILURES}
    attempts = data["attempts"]
    assert [a["attempt"] for a in attempts] == list(range(PAGE_ATTEMPTS + 1, 2 * PAGE_ATTEMPTS + 1))
    assert [a["index"] for a in attempts] == list(range(PAGE_ATTEMPTS, 2 * PAGE_ATTEMPTS))
    assert (data["status"], data["input"]) == ("compensated", {"sku": "a"})

    # a click on an attempt reads that attempt: the last one is event 100,000 of the log
    detail = get(f"{base}/api/attempt", saga="long", seq=str(2 * FAILURES)).json()
    assert (detail["attempt"], detail["outcome"], detail["message"]) \
        == (FAILURES, "failed", f"no stock ({FAILURES})")
    assert detail["seq"] == 2 * FAILURES
    assert f"no stock ({FAILURES})" in get(f"{base}/attempt", saga="long", seq=str(2 * FAILURES)).text
    # loading every attempt at once took 558 MB
    assert _hwm_kib(proc.pid) - small < 60 * 1024, (small, _hwm_kib(proc.pid))


def test_show_json_streams_a_long_saga_in_bounded_memory(long_log: str, tmp_path: Path) -> None:
    small = peak_kib("--db", long_log, "show", "short", "--json")
    large = peak_kib("--db", long_log, "show", "long", "--json", out=tmp_path / "long.json")
    assert large - small < 40 * 1024, (small, large)  # the whole document in memory: 184 MB at 50,000
    data = json.loads((tmp_path / "long.json").read_text())
    assert [a["attempt"] for a in data["attempts"]] == list(range(1, FAILURES + 1))
    assert data["attempts"][-1]["message"] == f"no stock ({FAILURES})"
    assert (data["status"], data["input"]) == ("compensated", {"sku": "a"})


def test_pages_cover_every_attempt_and_action_once(sql_url: str) -> None:
    n = 2 * PAGE_ATTEMPTS + 30
    events = failing(n, cancel_after={3, PAGE_ATTEMPTS + 5, n})
    write(sql_url, {"mid": events})
    with EventStore(sql_url, schema="require") as store:
        whole = timeline("mid", store.load("mid")).to_json()
    seen: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    with serving(sql_url, free_port()) as base:
        for page in (1, 2, 3):
            data = get(f"{base}/api/sagas/mid", page=str(page)).json()
            assert data["page"]["pages"] == 3
            assert {k: v for k, v in data.items() if k not in ("attempts", "operator_actions", "page")} \
                == {k: v for k, v in whole.items() if k not in ("attempts", "operator_actions")}
            seen += data["attempts"]
            actions += data["operator_actions"]
            for a in data["attempts"]:
                one = get(f"{base}/api/attempt", saga="mid", seq=str(a["seq"])).json()
                assert one == {"id": "mid", **{k: v for k, v in a.items() if k != "index"}}
        assert HTTP.get(f"{base}/api/sagas/mid", params={"page": "4"}, timeout=30).status_code == 400
    assert [{k: v for k, v in a.items() if k != "index"} for a in seen] == whole["attempts"]
    assert [a["index"] for a in seen] == list(range(n))
    assert actions == whole["operator_actions"] and len(actions) == 3

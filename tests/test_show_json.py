"""``saga show ID --json`` against figures taken from the stored events directly, and ``saga show``
in colour on a terminal (a real pseudo-terminal) and plain when piped."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from saga import Coordinator, EventStore, PermanentError, Retry, Saga, StepContext, StoredEvent
from saga.cli.colour import paint, wanted
from saga.inspection.timeline import show
from tests.cli_run import ROOT, SAGA, run

_START = {"StepAttemptStarted": False, "CompensationAttemptStarted": True}
_FAILED = {"StepAttemptFailed": False, "CompensationAttemptFailed": True}
_SUCCEEDED = {"StepSucceeded": False, "StepCompensated": True}


def _saga() -> Saga:
    saga = Saga("order")

    @saga.step(retry=Retry.fixed(0.05, attempts=3))
    def reserve(ctx: StepContext) -> str:
        if ctx.attempt < 3:
            raise ConnectionError(f"stock service busy ({ctx.attempt})")
        return "reserved"

    @reserve.compensate(retry=Retry.fixed(0.02, attempts=3))
    def release(ctx: StepContext) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("stock service down")

    @saga.step(retry=Retry.fixed(0.03, attempts=2), timeout=0.1)
    async def charge(ctx: StepContext) -> str:
        if ctx.attempt == 1:
            await asyncio.sleep(2)
        if ctx.input == "declined":
            raise PermanentError("card declined")
        return "charged"

    return saga


def expected(events: list[StoredEvent]) -> list[dict[str, Any]]:
    """The attempts of a log, worked out from its raw rows (not through saga.inspection.history)."""
    attempts: list[dict[str, Any]] = []
    for e in events:
        d = e.data
        if e.type in _START:
            attempts.append({"step": d["step"], "attempt": d["attempt"], "compensation": _START[e.type],
                             "started_at": d["at"], "outcome": "running", "delay": None})
            continue
        comp = _FAILED.get(e.type, _SUCCEEDED.get(e.type))
        if comp is None:
            continue
        [a] = [a for a in attempts if (a["step"], a["attempt"], a["compensation"]) ==
               (d["step"], d["attempt"], comp)]
        a["ended_at"] = d["at"]
        if e.type in _SUCCEEDED:
            a["outcome"] = "succeeded"
        else:
            a["outcome"] = "timed_out" if d["timed_out"] else "lost" if d["lost"] else "failed"
            a["error_type"] = d["error_type"]
            if d["retried"]:
                a["delay"] = (_t(d["next_attempt_at"]) - _t(d["at"])).total_seconds()
    return attempts


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def saga_cmd(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(*args, env=env)


@pytest.mark.parametrize("case", ["charged", "declined"])
def test_show_json_names_the_attempts_outcomes_and_delays(sql_url: str, case: str) -> None:
    with EventStore(sql_url) as store, Coordinator(store, sagas=[_saga()]) as coordinator:
        coordinator.execute("order", case, saga_id="o1")
        events = store.load("o1")
        status = store.summary("o1").status.value
    result = saga_cmd("--db", sql_url, "show", "o1", "--json")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()  # one object
    data = json.loads(line)
    assert (data["id"], data["name"], data["version"], data["status"]) == ("o1", "order", 1, status)
    want = expected(events)
    got = data["attempts"]
    assert [(a["step"], a["attempt"], a["compensation"], a["outcome"]) for a in got] == [
        (a["step"], a["attempt"], a["compensation"], a["outcome"]) for a in want]
    for g, w in zip(got, want, strict=True):
        assert _t(g["started_at"]) == _t(w["started_at"])
        assert _t(g["ended_at"]) == _t(w["ended_at"])
        assert g["error_type"] == w.get("error_type")
        delay = None if g["next_attempt_at"] is None else (
            _t(g["next_attempt_at"]) - _t(g["ended_at"])).total_seconds()
        assert delay == w["delay"]
        assert g["calls"] == []
    # the figures this saga's policies give
    outcomes = [(a["step"], a["outcome"]) for a in got if not a["compensation"]]
    assert outcomes[:5] == [("reserve", "failed"), ("reserve", "failed"), ("reserve", "succeeded"),
                            ("charge", "timed_out"),
                            ("charge", "succeeded" if case == "charged" else "failed")]
    assert [round(a["delay"], 3) for a in want if a["delay"] is not None][:3] == [0.05, 0.05, 0.03]
    if case == "declined":
        assert status == "compensated"
        assert data["reason"].startswith("step charge failed: PermanentError: card declined")
        assert [(a["step"], a["attempt"], a["outcome"]) for a in got if a["compensation"]] == [
            ("reserve", 1, "failed"), ("reserve", 2, "succeeded")]
    assert data["operator_actions"] == []


def test_show_json_lists_operator_actions(sqlite_url: str) -> None:
    with EventStore(sqlite_url) as store, Coordinator(store, sagas=[_saga()]) as coordinator:
        coordinator.start("order", "charged", saga_id="o2")
        coordinator.cancel("o2", reason="customer called", by="dana")
        coordinator.run("o2")
        [cancel] = [e for e in store.load("o2") if e.type == "SagaCancelRequested"]
    data = json.loads(saga_cmd("--db", sqlite_url, "show", "o2", "--json").stdout)
    assert data["status"] == "compensated"
    assert data["operator_actions"] == [
        {"type": "cancel", "at": _t(cancel.data["at"]).isoformat(), "by": "dana",
         "reason": "customer called"}]


def test_show_json_of_an_unknown_saga_fails_in_one_line(sqlite_url: str) -> None:
    with EventStore(sqlite_url):
        pass
    result = saga_cmd("--db", sqlite_url, "show", "nope", "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("saga: error: ") and "nope" in line


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """What ``saga ARGS`` writes to a real pseudo-terminal."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([SAGA, *args], cwd=ROOT, env=env, stdout=follower,
                                stderr=subprocess.PIPE)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
    return b"".join(chunks).decode()


def test_show_is_coloured_on_a_terminal_and_plain_when_piped(sqlite_url: str) -> None:
    with EventStore(sqlite_url) as store, Coordinator(store, sagas=[_saga()]) as coordinator:
        coordinator.execute("order", "declined", saga_id="o3")
        plain = list(show(store, "o3"))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "SAGA_DATABASE_URL")}
    env["TERM"] = "xterm"
    piped = saga_cmd("--db", sqlite_url, "show", "o3").stdout
    assert "\033" not in piped
    assert piped.splitlines() == plain
    tty = _on_a_terminal(["--db", sqlite_url, "show", "o3"], env)
    assert "\033[31m" in tty and "\033[32m" in tty  # failures red, successes green
    # the same text once the colour is taken out
    assert [_strip(line) for line in tty.replace("\r\n", "\n").splitlines()] == plain
    no_colour = _on_a_terminal(["--db", sqlite_url, "show", "o3"], env | {"NO_COLOR": "1"})
    assert "\033" not in no_colour


def _strip(line: str) -> str:
    return re.sub(r"\033\[\d+m", "", line)


def test_paint_colours_by_outcome_and_keeps_the_text() -> None:
    lines = [
        "saga o1  (order v1)  compensated",
        "  started 2026-01-01T00:00:00.000+00:00",
        "  +   0.000s  reserve  attempt 1 failed: ConnectionError: succeeded on attempt 9",
        "  +   0.100s  reserve  succeeded on attempt 2: \"reserved\"",
        "  +   0.200s  charge   attempt 1 timed out: AttemptTimedOut: too slow",
        "  +   0.300s  saga     operator asked to cancel: customer called",
    ]
    painted = list(paint(lines))
    assert [_strip(p) for p in painted] == lines
    assert "\033[33mcompensated" in painted[0]
    assert painted[1] == lines[1]
    # the colour follows the timeline's own words, not a service's message
    assert "\033[31mattempt 1 failed: ConnectionError: succeeded on attempt 9" in painted[2]
    assert "\033[32msucceeded on attempt 2" in painted[3]
    assert "\033[33mattempt 1 timed out" in painted[4]
    assert "\033[36moperator asked" in painted[5]


def test_wanted_only_on_a_terminal_without_no_color(tmp_path: Path) -> None:
    with (tmp_path / "out").open("w") as f:
        assert not wanted(f, {})
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            assert wanted(tty, {"TERM": "xterm"})
            assert not wanted(tty, {"TERM": "xterm", "NO_COLOR": "1"})
            assert not wanted(tty, {"TERM": "dumb"})
    finally:
        os.close(leader)
        os.close(follower)

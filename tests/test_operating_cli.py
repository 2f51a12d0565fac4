"""The operators' commands run as real processes, on SQLite and PostgreSQL: retry and cancel
(one saga, or many by filter), skip, fork and check."""

from __future__ import annotations

import json
import os
import subprocess

from saga import EventStore, SagaStatus
from tests.cli_run import ROOT, SAGA, run
from tests.helpers import snapshot, types

TARGET = "tests.fixtures.ops_sagas:shipment"


def _ok(url: str, *args: str) -> str:
    result = run("--db", url, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _error(url: str, *args: str, code: int = 1) -> str:
    result = run("--db", url, *args)
    assert result.returncode == code, (result.stdout, result.stderr)
    return result.stderr.strip().splitlines()[-1]


def _start(url: str, sku: str, saga_id: str) -> None:
    _ok(url, "start", TARGET, "shipment", "--input", json.dumps({"sku": sku}), "--id", saga_id)


def _work(url: str, target: str = TARGET) -> None:
    _ok(url, "worker", target, "--until-idle")


def test_retry_and_cancel_one_saga_record_who_and_why(sql_url: str) -> None:
    _start(sql_url, "flaky", "s-cancel")
    _start(sql_url, "stuck-undo", "s-retry")
    _work(sql_url)
    assert _ok(sql_url, "cancel", "s-cancel", "--by", "dana", "--reason", "customer called") == (
        "s-cancel: cancel requested (running; a worker compensates it)\n")
    assert _ok(sql_url, "retry", "s-retry", "--reason", "API back") == (
        "s-retry: compensating (a worker resumes its compensation)\n")
    with EventStore(sql_url) as store:
        cancel = store.load("s-cancel")[-1]
        retry = store.load("s-retry")[-1]
    assert (cancel.data["by"], cancel.data["reason"]) == ("dana", "customer called")
    assert retry.data["by"] and retry.data["reason"] == "API back"  # the login user
    shown = _ok(sql_url, "show", "s-cancel")
    assert "operator asked to cancel: customer called (by dana)" in shown


def test_bulk_dry_run_then_real_acts_on_the_same_sagas(sql_url: str) -> None:
    for i in range(3):
        _start(sql_url, "stuck-undo", f"f-{i}")
    _start(sql_url, "flaky", "w-1")
    _work(sql_url)
    before = snapshot(sql_url)
    dry = _ok(sql_url, "retry", "--status", "failed", "--failed-step", "charge", "--dry-run")
    *ids, summary = dry.splitlines()
    assert sorted(ids) == ["f-0", "f-1", "f-2"]
    assert summary == "dry run: 3 sagas would be retried; nothing was written"
    assert snapshot(sql_url) == before

    real = _ok(sql_url, "retry", "--status", "failed", "--failed-step", "charge",
               "--by", "dana", "--reason", "warehouse back")
    assert sorted(real.splitlines()[:-1]) == [f"f-{i}: retried" for i in range(3)]
    assert real.splitlines()[-1] == "3 acted on, 0 skipped"
    with EventStore(sql_url) as store:
        for saga_id in ids:
            assert types(store, saga_id).count("SagaRetryRequested") == 1

    # a cancel by error type, then again: the second time it is cancelled already, so neither
    # listed nor acted on
    again = _ok(sql_url, "cancel", "--error-type", "ConnectionError", "--by", "dana")
    assert again == "w-1: cancelled\n1 acted on, 0 skipped\n"
    twice = _ok(sql_url, "cancel", "--name", "shipment", "--status", "running", "--dry-run")
    assert twice.splitlines()[-1] == "dry run: 0 sagas would be cancelled; nothing was written"
    assert _ok(sql_url, "cancel", "--name", "shipment", "--status", "running") == (
        "0 acted on, 0 skipped\n")


def test_bulk_refuses_no_filter_an_id_with_filters_and_bad_filters(sql_url: str) -> None:
    _start(sql_url, "flaky", "w-1")
    before = snapshot(sql_url)
    assert "needs a saga ID, or at least one filter" in _error(sql_url, "retry", "--dry-run")
    assert "not both (--status with an ID)" in _error(sql_url, "cancel", "w-1", "--status", "running")
    assert "unknown status 'stuck'" in _error(sql_url, "cancel", "--status", "stuck")
    assert "--since" in _error(sql_url, "cancel", "--since", "yesterday")
    assert snapshot(sql_url) == before


def test_two_operators_running_the_same_bulk_retry_act_on_each_saga_once(sql_url: str) -> None:
    ids = [f"f-{i:02}" for i in range(10)]
    for saga_id in ids:
        _start(sql_url, "stuck-undo", saga_id)
    _work(sql_url)
    env = {k: v for k, v in os.environ.items() if k != "SAGA_DATABASE_URL"}
    procs = [subprocess.Popen(
        [SAGA, "--db", sql_url, "retry", "--status", "failed", "--by", who],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) for who in ("dana", "erin")]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    acted = [line.split(":")[0] for out, _ in outputs for line in out.splitlines()
             if line.endswith(": retried")]
    assert sorted(acted) == ids
    with EventStore(sql_url) as store:
        for saga_id in ids:
            assert types(store, saga_id).count("SagaRetryRequested") == 1


def test_skip_a_stuck_step_then_the_saga_completes_with_the_given_result(sql_url: str) -> None:
    _start(sql_url, "flaky", "s-1")
    _work(sql_url)
    assert "the step to skip is 'charge'" in _error(
        sql_url, "skip", TARGET, "s-1", "ship", "--result", "{}")
    assert "--result: not valid JSON" in _error(
        sql_url, "skip", TARGET, "s-1", "charge", "--result", "{")
    out = _ok(sql_url, "skip", TARGET, "s-1", "charge", "--result", '{"payment": "by-phone"}',
              "--by", "dana", "--reason", "paid by phone")
    assert out == "s-1: step charge skipped (running; a worker continues with the next step)\n"
    _work(sql_url)
    with EventStore(sql_url) as store:
        view = store.summary("s-1")
        skipped = [e for e in store.load("s-1") if e.type == "StepSkipped"]
        shipped = [e for e in store.load("s-1") if e.type == "StepSucceeded"][-1]
    assert view.status is SagaStatus.COMPLETED
    assert [(e.data["step"], e.data["result"], e.data["by"]) for e in skipped] == [
        ("charge", {"payment": "by-phone"}, "dana")]
    assert shipped.data["result"] == {"shipped_with": {"payment": "by-phone"}}
    shown = _ok(sql_url, "show", "s-1")
    assert ('charge   skipped by an operator with result {"payment": "by-phone"}: '
            "paid by phone (by dana)") in shown


def test_fork_prints_its_id_and_both_logs_name_each_other(sql_url: str) -> None:
    _start(sql_url, "declined", "s-orig")
    _work(sql_url)
    new_id = _ok(sql_url, "fork", TARGET, "s-orig", "--from", "charge", "--input", '{"sku": "ok"}',
                 "--id", "s-fork", "--by", "dana", "--reason", "card fixed").strip()
    assert new_id == "s-fork"
    assert "never reached step 'ship'" in _error(sql_url, "fork", "s-orig", "--from", "ship")
    _work(sql_url)
    with EventStore(sql_url) as store:
        assert store.summary("s-fork").status is SagaStatus.COMPLETED
        assert store.summary("s-orig").status is SagaStatus.COMPENSATED
        fork_log = store.load("s-fork")
        named = store.load("s-orig")[-1]
    assert fork_log[0].data["forked_from"] == {"id": "s-orig", "step": "charge"}
    assert [e.data.get("step") for e in fork_log if e.type == "StepAttemptStarted"] == [
        "charge", "ship"]
    assert (named.type, named.data["fork"]) == ("SagaForked", "s-fork")
    assert "forked as saga s-fork from step charge: card fixed (by dana)" in _ok(
        sql_url, "show", "s-orig")
    assert "forked from saga s-orig at step charge" in _ok(sql_url, "show", "s-fork")
    assert "reserve  copied from saga s-orig, not run" in _ok(sql_url, "show", "s-fork")


def test_check_exits_1_with_what_would_get_stuck_and_0_on_a_compatible_change(
    sql_url: str,
) -> None:
    _start(sql_url, "flaky", "waiting")
    _start(sql_url, "stuck-undo", "failed")
    _work(sql_url)
    assert _ok(sql_url, "check", "tests.fixtures.ops_sagas:compatible") == (
        "every saga in flight can continue\n")
    result = run("--db", sql_url, "check", "tests.fixtures.ops_sagas:no_release", "--json")
    assert result.returncode == 1, result.stderr
    problems = json.loads(result.stdout)
    assert [(p["id"], p["kind"], p["status"]) for p in problems] == [
        ("failed", "compensation_missing", "failed")]
    assert "reserve" in problems[0]["reason"]
    text = run("--db", sql_url, "check", "tests.fixtures.ops_sagas:renamed")
    assert text.returncode == 1
    assert text.stdout.splitlines()[-1] == "2 sagas in flight cannot continue"
    assert "waiting  shipment v1  running  step_missing: " in text.stdout
    gone = run("--db", sql_url, "check", "tests.fixtures.ops_sagas:only_v2", "--json")
    assert gone.returncode == 1
    assert {p["kind"] for p in json.loads(gone.stdout)} == {"not_registered"}

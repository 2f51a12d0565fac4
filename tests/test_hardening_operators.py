"""Operators' values meet the saga's definition, on SQLite and PostgreSQL: ``skip --result`` and
``fork --input`` are checked against the models of a TARGET and their secret fields sealed;
forks of sealed sagas re-seal what they copy under their own id and run; ``check`` reports a
saga whose input its model refuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from saga import (
    Coordinator,
    EventStore,
    InvalidInput,
    SagaStatus,
    VirtualClock,
)
from saga import events as ev
from saga.operators.actions import skip
from saga.operators.check import check
from saga.operators.fork import fork
from saga.secrets.keys import ENV_VAR, MASK, EncryptionKeyMissing, generate_key
from saga.secrets.sealing import stored_input
from tests.cli_run import error_line, ok, run
from tests.fixtures.sealed_ops import PASSWORD, TOKEN_PREFIX, Account, vault
from tests.helpers import snapshot
from tests.test_secret_fields import raw_log

TARGET = "tests.fixtures.sealed_ops"
SKIPPED_TOKEN = "skipped-token-5519"
NEW_PASSWORD = "pw-battery-staple-0042"
SECRETS = (PASSWORD, TOKEN_PREFIX, SKIPPED_TOKEN, NEW_PASSWORD)


def account(mode: str = "ok", password: str = PASSWORD, owner: str = "ada") -> dict[str, Any]:
    return {"owner": owner, "mode": mode, "password": password}


def assert_sealed(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} found in {where}"


def seen(path: Path) -> dict[str, dict[str, str]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return {r["saga"]: r for r in map(json.loads, lines)}


def assert_nothing_shows_a_secret(url: str, *saga_ids: str) -> None:
    """Neither the raw rows nor anything the command line prints of these sagas holds a secret."""
    assert_sealed(raw_log(url), "the log's tables")
    for saga_id in saga_ids:
        for args in (("show", saga_id), ("show", saga_id, "--json"), ("history", saga_id),
                     ("history", saga_id, "--json")):
            assert_sealed(ok("--db", url, *args), f"saga {' '.join(args)}")
    assert_sealed(ok("--db", url, "export"), "saga export")


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A key in the environment of this test and of every command it runs."""
    text = generate_key()
    monkeypatch.setenv(ENV_VAR, text)
    return text


@pytest.fixture
def seen_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "seen.jsonl"
    monkeypatch.setenv("SECRET_SEEN", str(path))
    return path


def _start(url: str, saga_id: str, mode: str) -> None:
    ok("--db", url, "start", TARGET, "vault", "--input", json.dumps(account(mode)),
       "--id", saga_id)


def _work(url: str) -> None:
    ok("--db", url, "worker", TARGET, "--until-idle")


# -- the command line ---------------------------------------------------------------------------


def test_skip_with_a_target_seals_the_secret_result_and_the_next_step_gets_it(
    sql_url: str, key: str, seen_file: Path
) -> None:
    _start(sql_url, "v-1", "flaky")
    _work(sql_url)
    result = json.dumps({"token": SKIPPED_TOKEN, "scope": "read"})
    assert ok("--db", sql_url, "skip", TARGET, "v-1", "issue", "--result", result,
              "--by", "dana") == (
        "v-1: step issue skipped (running; a worker continues with the next step)\n")
    assert_nothing_shows_a_secret(sql_url, "v-1")
    shown = ok("--db", sql_url, "show", "v-1")
    assert "skipped by an operator with result {" in shown and f'"token": "{MASK}"' in shown
    _work(sql_url)
    with EventStore(sql_url) as store:
        assert store.summary("v-1").status is SagaStatus.COMPLETED
    assert seen(seen_file)["v-1"]["token"] == SKIPPED_TOKEN  # opened for the next step
    assert_nothing_shows_a_secret(sql_url, "v-1")


def test_skip_refuses_a_result_it_cannot_check_and_writes_nothing(sql_url: str, key: str) -> None:
    _start(sql_url, "v-1", "flaky")
    _work(sql_url)
    before = snapshot(sql_url)
    result = json.dumps({"token": SKIPPED_TOKEN, "scope": "read"})
    line = error_line("--db", sql_url, "skip", "v-1", "issue", "--result", result)
    assert "--result needs the saga's TARGET" in line
    line = error_line("--db", sql_url, "skip", TARGET, "v-1", "issue", "--result",
                      json.dumps({"token": SKIPPED_TOKEN}))
    assert "result for step 'issue' does not fit Grant: scope: Field required" in line
    assert SKIPPED_TOKEN not in line
    line = error_line("--db", sql_url, "skip", "tests.fixtures.ops_sagas:shipment", "v-1", "issue",
                      "--result", result)
    assert "needs the definition of 'vault' version 1" in line
    assert "(definitions given: shipment v1)" in line
    assert snapshot(sql_url) == before


def test_skip_without_a_target_or_a_result_skips_with_none(sql_url: str) -> None:
    shipment = "tests.fixtures.ops_sagas:shipment"
    ok("--db", sql_url, "start", shipment, "shipment", "--input", '{"sku": "flaky"}', "--id", "s-1")
    ok("--db", sql_url, "worker", shipment, "--until-idle")
    assert ok("--db", sql_url, "skip", "s-1", "charge") == (
        "s-1: step charge skipped (running; a worker continues with the next step)\n")
    ok("--db", sql_url, "worker", shipment, "--until-idle")
    with EventStore(sql_url) as store:
        assert store.summary("s-1").status is SagaStatus.COMPLETED
        assert store.load("s-1")[-2].data["result"] == {"shipped_with": None}


def test_fork_with_a_target_seals_its_input_and_runs(
    sql_url: str, key: str, seen_file: Path
) -> None:
    _start(sql_url, "v-orig", "declined")
    _work(sql_url)
    new_input = json.dumps(account(password=NEW_PASSWORD))
    assert ok("--db", sql_url, "fork", TARGET, "v-orig", "--from", "use", "--input", new_input,
              "--id", "v-fork") == "v-fork\n"
    _work(sql_url)
    with EventStore(sql_url) as store:
        assert store.summary("v-fork").status is SagaStatus.COMPLETED
    assert seen(seen_file)["v-fork"] == {"saga": "v-fork", "password": NEW_PASSWORD,
                                         "token": TOKEN_PREFIX + "ada"}
    assert_nothing_shows_a_secret(sql_url, "v-orig", "v-fork")


def test_a_fork_of_a_sealed_saga_reseals_what_it_copies_and_runs(
    sql_url: str, key: str, seen_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _start(sql_url, "v-orig", "ok")
    monkeypatch.setenv("VAULT_DECLINE", "1")
    _work(sql_url)  # use is declined: the original is compensated
    monkeypatch.delenv("VAULT_DECLINE")
    # the fork keeps the original's input: no TARGET needed, the key re-seals what it copies
    assert ok("--db", sql_url, "fork", "v-orig", "--from", "use", "--id", "v-same") == "v-same\n"
    _work(sql_url)
    with EventStore(sql_url) as store:
        assert store.summary("v-orig").status is SagaStatus.COMPENSATED
        assert store.summary("v-same").status is SagaStatus.COMPLETED
    assert seen(seen_file)["v-same"] == {"saga": "v-same", "password": PASSWORD,
                                         "token": TOKEN_PREFIX + "ada"}
    assert "copied from saga v-orig, not run" in ok("--db", sql_url, "show", "v-same")
    assert_nothing_shows_a_secret(sql_url, "v-orig", "v-same")


def test_fork_refuses_what_it_cannot_check_or_seal_and_writes_nothing(
    sql_url: str, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _start(sql_url, "v-orig", "declined")
    _work(sql_url)
    before = snapshot(sql_url)
    good = json.dumps(account(password=NEW_PASSWORD))
    line = error_line("--db", sql_url, "fork", "v-orig", "--from", "use", "--input", good)
    assert "--input needs the saga's TARGET" in line
    bad = json.dumps({"owner": "ada", "password": NEW_PASSWORD, "mode": ["not", "a", "str"]})
    line = error_line("--db", sql_url, "fork", TARGET, "v-orig", "--from", "use", "--input", bad)
    assert "saga 'vault': invalid input: mode: Input should be a valid string" in line
    assert NEW_PASSWORD not in line
    monkeypatch.delenv(ENV_VAR)
    line = error_line("--db", sql_url, "fork", "v-orig", "--from", "use")
    assert "the values at v-orig/input are sealed" in line and ENV_VAR in line
    wrong = generate_key()
    line = error_line("--db", sql_url, "--encryption-key", wrong, "fork", "v-orig", "--from", "use")
    assert "not among the configured keys" in line
    assert snapshot(sql_url) == before


def test_check_reports_a_saga_whose_input_fails_its_model(sql_url: str, key: str) -> None:
    with EventStore(sql_url) as store:  # as an older fork wrote it: input the model refuses
        now = VirtualClock().now()
        store.create("v-bad", [ev.SagaStarted(name="vault", version=1, input={"owner": "ada"},
                                              at=now)],
                     name="vault", version=1, status=SagaStatus.RUNNING, wake_at=now, now=now)
    _start(sql_url, "v-good", "flaky")
    result = run("--db", sql_url, "check", TARGET)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "v-bad  vault v1  running  input_invalid: saga v-bad: its input does not fit Account: "
        "password: Field required",
        "1 saga in flight cannot continue",
    ]


# -- the library --------------------------------------------------------------------------------


@pytest.fixture
def keyed(sql_url: str) -> Iterator[EventStore]:
    with EventStore(sql_url, encryption_key=generate_key()) as store:
        yield store


def test_the_library_checks_and_seals_what_an_operator_gives(
    sql_url: str, keyed: EventStore, seen_file: Path
) -> None:
    clock = VirtualClock()
    with Coordinator(keyed, [vault], clock=clock, poll_interval=60.0) as c:
        c.start("vault", account("flaky"), saga_id="v-1")
        c.start("vault", account("declined"), saga_id="v-orig")
        c.work(until_idle=True)
        before = snapshot(sql_url)
        grant = {"token": SKIPPED_TOKEN, "scope": "read"}
        with pytest.raises(InvalidInput, match="needs the definition of 'vault' version 1"):
            skip(keyed, clock, "v-1", "issue", result=grant)
        with pytest.raises(InvalidInput, match="needs the definition of 'vault' version 1"):
            fork(keyed, clock, "v-orig", from_step="use", input=account())
        with pytest.raises(InvalidInput, match="invalid input: password: Field required"):
            c.fork("v-orig", from_step="use", input={"owner": "ada"})
        with pytest.raises(InvalidInput, match="does not fit Grant"):
            c.skip("v-1", "issue", result={"token": 5})
        assert snapshot(sql_url) == before

        c.skip("v-1", "issue", result=grant, by="dana")
        forked = c.fork("v-orig", from_step="use", input=account(password=NEW_PASSWORD))
        same = fork(keyed, clock, "v-orig", from_step="use", input=Account(
            owner="bob", password=SecretStr(NEW_PASSWORD)), sagas=[vault])
        c.work(until_idle=True)
        assert [c.get(i).status for i in ("v-1", forked, same)] == [SagaStatus.COMPLETED] * 3
    records = seen(seen_file)
    assert records["v-1"]["token"] == SKIPPED_TOKEN
    assert records[forked] == {"saga": forked, "password": NEW_PASSWORD,
                               "token": TOKEN_PREFIX + "ada"}
    assert records[same]["password"] == NEW_PASSWORD
    assert_sealed(raw_log(sql_url), "the log's tables")
    assert list(check(keyed, [vault])) == []


def test_a_fork_of_a_sealed_saga_without_a_key_is_refused(sql_url: str, keyed: EventStore) -> None:
    clock = VirtualClock()
    with Coordinator(keyed, [vault], clock=clock, poll_interval=60.0) as c:
        c.start("vault", account("declined"), saga_id="v-orig")
        c.work(until_idle=True)
    before = snapshot(sql_url)
    with EventStore(sql_url) as keyless, pytest.raises(EncryptionKeyMissing, match="are sealed"):
        fork(keyless, clock, "v-orig", from_step="use")
    assert snapshot(sql_url) == before


def test_check_reports_values_copied_from_another_saga_that_do_not_open(
    keyed: EventStore,
) -> None:
    clock = VirtualClock()
    with Coordinator(keyed, [vault], clock=clock, poll_interval=60.0) as c:
        c.start("vault", account("declined"), saga_id="v-orig")
        c.work(until_idle=True)
    original = keyed.load("v-orig")
    sealed_grant = next(e.data["result"] for e in original if e.type == "StepSucceeded")
    now = clock.now()
    # what a fork wrote before it re-sealed: the original's envelopes, verbatim
    inputs = {"v-old-fork": original[0].data["input"],
              "v-old-result": stored_input(vault, account(), "v-old-result", keyed.key_ring)}
    for saga_id, sealed_input in inputs.items():
        keyed.create(saga_id, [
            ev.SagaStarted(name="vault", version=1, input=sealed_input, at=now,
                           forked_from={"id": "v-orig", "step": "use"}),
            ev.StepCopied(step="issue", result=sealed_grant, copied_from="v-orig", at=now),
        ], name="vault", version=1, status=SagaStatus.RUNNING, wake_at=now, now=now)
    problems = {p.saga_id: (p.kind, p.reason) for p in check(keyed, [vault])}
    assert keyed.key_ring is not None
    assert problems == {
        "v-old-fork": ("input_invalid", "saga v-old-fork: its input does not open: the secret at "
                       "password (key id " + keyed.key_ring.primary_id + ") does not decrypt: it was "
                       "altered, or moved from another saga or field"),
        "v-old-result": ("result_invalid", "saga v-old-result: the result of step 'issue' does "
                         "not open: the secret at token (key id " + keyed.key_ring.primary_id
                         + ") does not decrypt: it was altered, or moved from another saga or "
                         "field"),
    }
    with EventStore(keyed.url) as keyless:  # without the key, sealed values are not checked
        assert list(check(keyless, [vault])) == []

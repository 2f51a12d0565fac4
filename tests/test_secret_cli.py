"""Secret fields on the command line: a worker process SIGKILLed between two steps, another
finishing the saga with the real values; keys given as a flag or in the environment."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from saga import EventStore, SagaStatus
from saga.secrets.keys import ENV_VAR, MASK, KeyRing, generate_key
from tests.cli_run import run
from tests.fixtures.secret_sagas import CARD, PIN, TOKEN_PREFIX
from tests.test_secret_fields import assert_no_secret, raw_log, seen

TARGET = "tests.fixtures.secret_sagas"
INPUT = json.dumps({"payer": "ada", "card": CARD, "pin": PIN.decode()})
LEASE = "0.5"


def saga(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``saga ARGS``; ``env`` is added to an environment with no key and no URL."""
    return run(*args, env=env, unset=(ENV_VAR,))


def test_a_step_after_a_crash_gets_the_real_secrets(sql_url: str, tmp_path: Path) -> None:
    key, seen_file = generate_key(), tmp_path / "seen.jsonl"
    started = saga("--db", sql_url, "--encryption-key", key, "start", TARGET, "pay",
                   "--input", INPUT, "--id", "p1")
    assert started.returncode == 0, started.stderr

    # the first worker runs tokenize, commits charge's start with its outcome, and dies in charge
    killed = run("--db", sql_url, "--encryption-key", key, "worker", TARGET, "--until-idle",
                 "--lease", LEASE, env={"SECRET_KILL": "1", "SECRET_SEEN": str(seen_file)},
                 unset=(ENV_VAR,), process=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with EventStore(sql_url) as store:
        types = [e.type for e in store.load("p1")]
        assert types[-2:] == ["StepSucceeded", "StepAttemptStarted"]
        assert store.load("p1")[-1].data["step"] == "charge"
    assert seen(seen_file) == []

    time.sleep(float(LEASE) + 0.2)  # the dead worker's lease lapses
    # another process, the same key in the environment this time
    # (the lost attempt's retry is due a moment later, after an --until-idle worker has stopped)
    for _ in range(10):
        finished = saga("--db", sql_url, "worker", TARGET, "--until-idle", "--lease", LEASE,
                        SECRET_SEEN=str(seen_file), **{ENV_VAR: key})
        assert finished.returncode == 0, finished.stderr
        with EventStore(sql_url) as store:
            if not store.summary("p1").status.is_active:
                break
        time.sleep(0.05)
    [record] = seen(seen_file)
    assert (record["card"], record["pin"], record["token"]) == (CARD, PIN.decode(),
                                                               f"{TOKEN_PREFIX}4444-p1")
    with EventStore(sql_url) as store:
        assert store.summary("p1").status is SagaStatus.COMPLETED
        outcomes = [(e.type, e.data.get("lost")) for e in store.load("p1")
                    if e.type in ("StepAttemptFailed", "StepSucceeded")]
        assert ("StepAttemptFailed", True) in outcomes  # the killed attempt counted as lost

    for args in (("show", "p1"), ("show", "p1", "--json"), ("history", "p1"),
                 ("history", "p1", "--json")):
        out = saga("--db", sql_url, *args)  # no key needed to read
        assert out.returncode == 0, out.stderr
        assert MASK in out.stdout or args == ("show", "p1", "--json")  # that JSON holds no values
        assert_no_secret(out.stdout + out.stderr, f"saga {' '.join(args)}")
    assert_no_secret(raw_log(sql_url), "the log's tables")
    if sql_url.startswith("sqlite"):
        for f in tmp_path.iterdir():
            if f.name.startswith("saga.db"):
                assert_no_secret(f.read_bytes(), f.name)


def test_start_without_a_key_fails_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "saga.db"
    result = saga("--db", f"sqlite:///{db}", "start", TARGET, "pay", "--input", INPUT)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("saga: error: saga 'pay' has secret fields (input, tokenize)")
    assert ENV_VAR in line and "saga key generate" in line
    assert not db.exists()


def test_a_malformed_key_is_refused_without_being_echoed(tmp_path: Path) -> None:
    db = tmp_path / "saga.db"
    bad = "not-a-key-but-maybe-a-typo-of-one"
    for result in (saga("--db", f"sqlite:///{db}", "--encryption-key", bad, "start", TARGET, "pay",
                        "--input", INPUT),
                   saga("--db", f"sqlite:///{db}", "worker", TARGET, "--until-idle", **{ENV_VAR: bad})):
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert "is not 32 bytes of URL-safe base64" in line
        assert bad not in line
    assert not db.exists()


def test_key_generate_prints_a_new_key_each_time() -> None:
    keys = [saga("key", "generate") for _ in range(2)]
    assert all(k.returncode == 0 for k in keys)
    texts = [k.stdout.strip() for k in keys]
    assert texts[0] != texts[1]
    for text in texts:
        assert len(text) == 44
        KeyRing([text])  # accepted as a key


def test_demo_without_a_key_seals_the_card_numbers(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = saga("--db", f"sqlite:///{db}", "demo")
    assert result.returncode == 0, result.stderr
    assert "no encryption key is set" in result.stderr
    assert result.stdout.count(f'"card": "{MASK}"') == 2
    assert "=> completed" in result.stdout and "=> compensated" in result.stdout
    for card in ("4242424242424242", "4000000000000000"):
        assert card not in result.stdout
        for f in tmp_path.iterdir():
            assert card.encode() not in f.read_bytes()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_demo_with_a_key_uses_it(tmp_path: Path, how: str) -> None:
    key = generate_key()
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    result = (saga("--db", db, "--encryption-key", key, "demo") if how == "flag"
              else saga("--db", db, "demo", **{ENV_VAR: key}))
    assert result.returncode == 0, result.stderr
    assert "no encryption key is set" not in result.stderr
    with EventStore(db, encryption_key=key) as store:
        [trip, *_] = store.find()
        card = store.load(trip.saga_id)[0].data["input"]["card"]
    assert card["$saga_secret"]["kid"] == KeyRing([key]).primary_id

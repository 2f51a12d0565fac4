"""Secret fields through the coordinator: sealed in the log, real for steps, stars for people.

Every backend; the database files and the PostgreSQL tables are read raw and
must not hold a secret; a coordinator process is SIGKILLed between two steps
and another process finishes the saga with the real values.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretBytes, SecretStr

from saga import (
    Coordinator,
    EventStore,
    PermanentError,
    Retry,
    Saga,
    SagaIdConflict,
    SagaNotFound,
    SagaStatus,
    StepContext,
)
from saga.inspection.timeline import show, stream
from saga.secrets.keys import (
    ENV_VAR,
    MASK,
    EncryptionKeyMissing,
    KeyRing,
    UnknownEncryptionKey,
    generate_key,
    key_id,
)
from saga.secrets.sealing import redacted
from tests.fixtures.secret_sagas import CARD, PIN, TOKEN_PREFIX, pay

SECRETS = (CARD, PIN.decode(), TOKEN_PREFIX)


class Card(BaseModel):
    number: SecretStr


class Hidden(BaseModel):
    """Defined at module level: a step's return annotation names it, and is resolved from here."""

    text: SecretStr
    raw: SecretBytes


def payment(payer: str = "ada", card: str = CARD) -> dict[str, Any]:
    return {"payer": payer, "card": card, "pin": PIN.decode()}


def seen(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_no_secret(text: str | bytes, where: str) -> None:
    for secret in SECRETS:
        if isinstance(text, bytes):
            assert secret.encode() not in text, f"{secret!r} found in {where}"
        else:
            assert secret not in text, f"{secret!r} found in {where}"


def raw_log(url: str) -> str:
    """Every row of the log's tables as the database holds them, as text."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            rows = [str(tuple(r)) for table in ("saga_events", "sagas")
                    for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    finally:
        engine.dispose()
    assert rows
    return "\n".join(rows)


@pytest.fixture(autouse=True)
def _no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def seen_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "seen.jsonl"
    monkeypatch.setenv("SECRET_SEEN", str(path))
    return path


@pytest.fixture
def key() -> str:
    return generate_key()


@pytest.fixture
def keyed(store_url: str, key: str) -> Iterator[EventStore]:
    with EventStore(store_url, encryption_key=key) as store:
        yield store


def test_steps_get_the_real_values_and_the_log_holds_none(keyed: EventStore, key: str,
                                                          seen_file: Path) -> None:
    with Coordinator(keyed, sagas=[pay]) as coordinator:
        done = coordinator.execute("pay", payment(), saga_id="p-ok")
        refused = coordinator.execute("pay", payment("refused"), saga_id="p-refused")
    assert done.status is SagaStatus.COMPLETED
    assert refused.status is SagaStatus.COMPENSATED
    records = {(r["saga"], r["step"]): r for r in seen(seen_file)}
    assert records["p-ok", "charge"] | {"pid": 0} == {
        "saga": "p-ok", "step": "charge", "pid": 0, "card": CARD, "pin": PIN.decode(),
        "token": f"{TOKEN_PREFIX}4444-p-ok",
    }
    # the compensation gets its step's own output, secret included
    assert records["p-refused", "forget_token"]["token"] == f"{TOKEN_PREFIX}4444-p-refused"

    for saga_id in ("p-ok", "p-refused"):
        events = keyed.load(saga_id)
        assert_no_secret(json.dumps([e.data for e in events]), f"the events of {saga_id}")
        started, succeeded = events[0].data, next(e.data for e in events if e.type == "StepSucceeded")
        kid = key_id(base64.urlsafe_b64decode(key))
        assert started["input"]["card"]["$saga_secret"]["kid"] == kid  # the stored value names its key
        assert succeeded["result"]["token"]["$saga_secret"]["kid"] == kid
        assert succeeded["result"]["last4"] == "4444"  # fields that are not secret stay readable
        text = "\n".join(show(keyed, saga_id))
        assert MASK in text
        assert_no_secret(text, "saga show")
        shown = json.dumps([e.to_json() for e in redacted(stream(keyed, saga_id))])
        assert_no_secret(shown, "saga history")
        assert MASK in shown


def test_starting_again_is_idempotent_and_other_secrets_conflict(keyed: EventStore) -> None:
    with Coordinator(keyed, sagas=[pay]) as coordinator:
        assert coordinator.start("pay", payment(), saga_id="p1") == "p1"
        # every sealing draws a fresh nonce: the same values still count as the same input
        assert coordinator.start("pay", payment(), saga_id="p1") == "p1"
        with pytest.raises(SagaIdConflict):
            coordinator.start("pay", payment(card="4000-0000-0000-0002"), saga_id="p1")
    assert keyed.summary("p1").last_seq == 1


def test_no_key_refuses_to_start_and_writes_nothing(store: EventStore) -> None:
    assert store.key_ring is None
    with Coordinator(store, sagas=[pay]) as coordinator:
        for start in (coordinator.start, coordinator.execute):
            with pytest.raises(EncryptionKeyMissing, match=f"saga 'pay' has secret fields .*{ENV_VAR}"):
                start("pay", payment(), saga_id="p1")
    assert store.find() == []
    with pytest.raises(SagaNotFound):
        store.load("p1")


def test_the_key_comes_from_the_environment(store_url: str, key: str, seen_file: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, key)
    with EventStore(store_url) as store, Coordinator(store, sagas=[pay]) as coordinator:
        assert store.key_ring is not None and store.key_ring.ids == KeyRing([key]).ids
        assert coordinator.execute("pay", payment(), saga_id="p1").status is SagaStatus.COMPLETED
    assert seen(seen_file)[0]["card"] == CARD


def test_rotation_reads_old_values_and_writes_new_ones(sqlite_url: str, seen_file: Path) -> None:
    old, new = generate_key(), generate_key()
    with EventStore(sqlite_url, encryption_key=old) as store, Coordinator(store, sagas=[pay]) as c:
        c.start("pay", payment(), saga_id="p1")
        c.start("pay", payment(), saga_id="p2")
    with EventStore(sqlite_url, encryption_key=new) as store, Coordinator(store, sagas=[pay]) as c:
        with pytest.raises(UnknownEncryptionKey, match=KeyRing([old]).primary_id) as caught:
            c.run("p2")
        assert old not in str(caught.value) and new not in str(caught.value)
        assert store.summary("p2").last_seq == 1  # the attempt could not be prepared: nothing written
    with EventStore(sqlite_url, encryption_key=f"{new},{old}") as store, \
            Coordinator(store, sagas=[pay]) as c:
        assert c.run("p1").status is SagaStatus.COMPLETED
        token = next(e for e in store.load("p1") if e.type == "StepSucceeded").data["result"]["token"]
        assert token["$saga_secret"]["kid"] == KeyRing([new]).primary_id  # new values: the first key
    assert seen(seen_file)[0]["card"] == CARD


def test_the_database_holds_no_secret(sql_url: str, key: str, seen_file: Path) -> None:
    with EventStore(sql_url, encryption_key=key) as store, Coordinator(store, sagas=[pay]) as c:
        c.execute("pay", payment(), saga_id="p-ok")
        c.execute("pay", payment("refused"), saga_id="p-refused")
        if sql_url.startswith("sqlite"):
            path = Path(sql_url.removeprefix("sqlite:///"))
            files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
            assert any(p.name.endswith("-wal") for p in files)  # read while the journal holds rows
            for f in files:
                assert_no_secret(f.read_bytes(), f.name)
    assert len(seen(seen_file)) == 3  # the steps did get the values
    assert_no_secret(raw_log(sql_url), "the log's tables")
    if sql_url.startswith("sqlite"):
        assert_no_secret(Path(sql_url.removeprefix("sqlite:///")).read_bytes(), "the database file")


def test_a_step_error_that_quotes_a_secret_is_logged_with_stars(keyed: EventStore) -> None:
    saga = Saga("echo", input_model=Card)

    @saga.step(retry=Retry.fixed(0.01, attempts=2))
    def charge(ctx: StepContext) -> None:
        number = ctx.input.number.get_secret_value()
        if ctx.attempt == 1:
            raise ConnectionError(f"bank refused card {number} (try again)")
        raise PermanentError(f"card {number} is blocked")

    with Coordinator(keyed, sagas=[saga]) as coordinator:
        view = coordinator.execute("echo", {"number": CARD}, saga_id="e1")
    assert view.status is SagaStatus.COMPENSATED
    failures = [e.data for e in keyed.load("e1") if e.type == "StepAttemptFailed"]
    assert [(f["error_type"], f["message"], f["retried"]) for f in failures] == [
        ("ConnectionError", f"bank refused card {MASK} (try again)", True),  # still retried
        ("PermanentError", f"card {MASK} is blocked", False),  # still permanent
    ]
    assert_no_secret(json.dumps([e.data for e in keyed.load("e1")]), "the log")
    assert_no_secret("\n".join(show(keyed, "e1")), "saga show")


@settings(max_examples=40, deadline=None)
@given(secret=st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s),
       data=st.binary(min_size=1, max_size=40))
def test_any_secret_comes_back_exactly_and_is_never_stored(secret: str, data: bytes) -> None:
    got: list[tuple[str, bytes]] = []
    saga = Saga("hide", input_model=Hidden)

    @saga.step
    def reveal(ctx: StepContext) -> Hidden:
        given: Hidden = ctx.input
        got.append((given.text.get_secret_value(), given.raw.get_secret_value()))
        return given

    @saga.step
    def again(ctx: StepContext) -> None:
        out = ctx.results["reveal"]
        got.append((out.text.get_secret_value(), out.raw.get_secret_value()))

    marked = f"S3CR3T<{secret}>"
    with EventStore("memory://", encryption_key=generate_key()) as store, \
            Coordinator(store, sagas=[saga]) as coordinator:
        coordinator.execute("hide", Hidden(text=SecretStr(marked), raw=SecretBytes(data)), saga_id="h")
        stored = [e.data for e in store.load("h")]
    assert got == [(marked, data), (marked, data)]
    for text in (json.dumps(stored), json.dumps(stored, ensure_ascii=False)):
        assert "S3CR3T<" not in text

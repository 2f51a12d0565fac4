"""Secret fields: encrypted envelopes in stored JSON, real values back, stars for people, clear errors."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretBytes, SecretStr

from saga import InvalidInput, SagaError
from saga.secrets.keys import (
    ENV_VAR,
    MASK,
    EncryptionKeyMissing,
    InvalidEncryptionKey,
    KeyRing,
    SecretDecryptionFailed,
    UnknownEncryptionKey,
    display_json,
    dump_secret_json,
    generate_key,
    has_secret_fields,
    is_envelope,
    key_id,
    load_secret_json,
    redact_json,
    resolve_key_ring,
)

ROOT = Path(__file__).resolve().parent.parent


class Card(BaseModel):
    holder: str
    number: SecretStr
    pin: SecretBytes | None = None


class Booking(BaseModel):
    traveller: str
    card: Card
    backup_cards: list[Card] = []
    tokens: dict[str, SecretStr] = {}
    note: SecretStr | None = None
    pair: tuple[str, SecretStr] | None = None


class Plain(BaseModel):
    city: str
    nights: int


class Node(BaseModel):
    label: str
    children: list[Node] = []


class SecretNode(BaseModel):
    children: list[SecretNode] = []
    secret: SecretStr | None = None


def booking() -> Booking:
    return Booking(
        traveller="Ada",
        card=Card(holder="Ada", number=SecretStr("4111-1111-1111-1111"),
                  pin=SecretBytes(b"\x01\x02PIN-7731")),
        backup_cards=[Card(holder="Bob", number=SecretStr("5500-0000-0000-0004"))],
        tokens={"bank": SecretStr("tok-bank-secret"), "airline": SecretStr("tok-air-secret")},
        note=SecretStr("allergic to peanuts"),
        pair=("seat", SecretStr("12A-secret")),
    )


CLEAR = ["4111-1111-1111-1111", "5500-0000-0000-0004", "tok-bank-secret", "tok-air-secret",
         "allergic to peanuts", "12A-secret", "PIN-7731"]


def test_generated_keys_are_32_random_bytes_in_url_safe_base64() -> None:
    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20
    for k in keys:
        assert len(base64.urlsafe_b64decode(k)) == 32
        assert set(k) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


def test_every_secret_is_encrypted_and_comes_back_real() -> None:
    ring = KeyRing([generate_key()])
    stored = dump_secret_json(Booking, booking(), keys=ring, context="saga-1/input")
    text = json.dumps(stored)
    for clear in CLEAR:
        assert clear not in text
    assert MASK not in text  # not pydantic's stars either: the secret would be lost
    assert stored["traveller"] == "Ada" and stored["card"]["holder"] == "Ada"
    for value in (stored["card"]["number"], stored["card"]["pin"], stored["backup_cards"][0]["number"],
                  stored["tokens"]["bank"], stored["note"], stored["pair"][1]):
        assert is_envelope(value)
        assert value["$saga_secret"]["kid"] == ring.primary_id

    back = load_secret_json(Booking, json.loads(text), keys=ring, context="saga-1/input")
    assert back.card.number.get_secret_value() == "4111-1111-1111-1111"
    assert back.card.pin is not None and back.card.pin.get_secret_value() == b"\x01\x02PIN-7731"
    assert back.backup_cards[0].number.get_secret_value() == "5500-0000-0000-0004"
    assert back.tokens["airline"].get_secret_value() == "tok-air-secret"
    assert back.note is not None and back.note.get_secret_value() == "allergic to peanuts"
    assert back.pair is not None and back.pair[1].get_secret_value() == "12A-secret"


def test_the_same_secret_encrypts_differently_each_time() -> None:
    ring = KeyRing([generate_key()])
    a = dump_secret_json(Card, Card(holder="x", number=SecretStr("same")), keys=ring)
    b = dump_secret_json(Card, Card(holder="x", number=SecretStr("same")), keys=ring)
    assert a["number"]["$saga_secret"]["nonce"] != b["number"]["$saga_secret"]["nonce"]
    assert a["number"]["$saga_secret"]["ct"] != b["number"]["$saga_secret"]["ct"]


def test_plain_data_validated_by_the_model_is_accepted() -> None:
    ring = KeyRing([generate_key()])
    stored = dump_secret_json(Card, {"holder": "Ada", "number": "4111"}, keys=ring)
    assert load_secret_json(Card, stored, keys=ring).number.get_secret_value() == "4111"
    with pytest.raises(InvalidInput, match="does not fit Card"):
        dump_secret_json(Card, {"holder": "Ada"}, keys=ring)


def test_people_see_stars_with_or_without_a_key() -> None:
    ring = KeyRing([generate_key()])
    stored = dump_secret_json(Booking, booking(), keys=ring)
    shown = redact_json(stored)
    assert shown["card"] == {"holder": "Ada", "number": MASK, "pin": MASK}
    assert shown["tokens"] == {"bank": MASK, "airline": MASK}
    assert shown["pair"] == ["seat", MASK]
    assert display_json(booking())["card"]["number"] == MASK
    assert display_json(booking())["note"] == MASK
    for clear in CLEAR:
        assert clear not in json.dumps(shown)


def test_a_model_with_secret_fields_needs_a_key_even_when_they_are_empty() -> None:
    with pytest.raises(EncryptionKeyMissing, match="Booking has secret fields") as caught:
        dump_secret_json(Booking, booking(), keys=None)
    assert ENV_VAR in str(caught.value)
    with pytest.raises(EncryptionKeyMissing):
        dump_secret_json(SecretNode, SecretNode(), keys=None)
    assert isinstance(caught.value, SagaError)
    # a model without secrets needs no key
    assert dump_secret_json(Plain, Plain(city="Oslo", nights=2), keys=None) == {"city": "Oslo", "nights": 2}


def test_reading_a_secret_without_a_key_is_a_clear_error() -> None:
    stored = dump_secret_json(Card, Card(holder="a", number=SecretStr("n")), keys=KeyRing([generate_key()]))
    with pytest.raises(EncryptionKeyMissing, match=r"secret at number"):
        load_secret_json(Card, stored, keys=None)


def test_secret_field_detection() -> None:
    assert has_secret_fields(Card) and has_secret_fields(Booking) and has_secret_fields(SecretNode)
    assert not has_secret_fields(Plain) and not has_secret_fields(Node)

    class InDict(BaseModel):
        m: dict[str, list[SecretBytes]]

    class Literalish(BaseModel):
        x: list[int] | None = None

    assert has_secret_fields(InDict) and not has_secret_fields(Literalish)


def test_keys_rotate_old_values_still_read_new_ones_use_the_first_key() -> None:
    old, new = generate_key(), generate_key()
    before = dump_secret_json(Card, Card(holder="a", number=SecretStr("old-secret")), keys=KeyRing([old]))
    rotated = KeyRing.parse(f"{new},{old}")
    assert rotated.primary_id == key_id(base64.urlsafe_b64decode(new))
    assert load_secret_json(Card, before, keys=rotated).number.get_secret_value() == "old-secret"
    after = dump_secret_json(Card, Card(holder="a", number=SecretStr("new-secret")), keys=rotated)
    new_kid = after["number"]["$saga_secret"]["kid"]
    assert new_kid == rotated.primary_id != before["number"]["$saga_secret"]["kid"]


def test_an_unknown_key_id_is_named_and_the_key_is_not() -> None:
    writer, reader = generate_key(), generate_key()
    stored = dump_secret_json(Card, Card(holder="a", number=SecretStr("s")), keys=KeyRing([writer]))
    kid = stored["number"]["$saga_secret"]["kid"]
    with pytest.raises(UnknownEncryptionKey) as caught:
        load_secret_json(Card, stored, keys=KeyRing([reader]))
    message = str(caught.value)
    assert kid in message and "number" in message
    assert writer not in message and reader not in message
    assert writer.rstrip("=") not in repr(KeyRing([writer]))


def test_an_envelope_moved_to_another_saga_or_field_or_altered_does_not_decrypt() -> None:
    ring = KeyRing([generate_key()])
    stored = dump_secret_json(Booking, booking(), keys=ring, context="saga-1")
    with pytest.raises(SecretDecryptionFailed, match=r"card\.number"):
        load_secret_json(Booking, stored, keys=ring, context="saga-2")
    swapped = json.loads(json.dumps(stored))
    swapped["card"]["number"], swapped["note"] = swapped["note"], swapped["card"]["number"]
    with pytest.raises(SecretDecryptionFailed):
        load_secret_json(Booking, swapped, keys=ring, context="saga-1")
    altered = json.loads(json.dumps(stored))
    ct = bytearray(base64.urlsafe_b64decode(altered["card"]["number"]["$saga_secret"]["ct"]))
    ct[0] ^= 1
    altered["card"]["number"]["$saga_secret"]["ct"] = base64.urlsafe_b64encode(bytes(ct)).decode()
    with pytest.raises(SecretDecryptionFailed, match="altered"):
        load_secret_json(Booking, altered, keys=ring, context="saga-1")
    broken = json.loads(json.dumps(stored))
    broken["card"]["number"]["$saga_secret"]["nonce"] = 42
    with pytest.raises(SecretDecryptionFailed, match="well-formed"):
        load_secret_json(Booking, broken, keys=ring, context="saga-1")


@pytest.mark.parametrize("bad", ["", "short", "x" * 44, base64.urlsafe_b64encode(b"k" * 31).decode(),
                                 base64.urlsafe_b64encode(b"k" * 33).decode(), "a!b" * 15])
def test_malformed_keys_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(InvalidEncryptionKey) as caught:
        KeyRing([bad])
    assert isinstance(caught.value, InvalidInput)
    if bad:
        assert bad not in str(caught.value)


def test_the_environment_variable_holds_one_key_or_several() -> None:
    a, b = generate_key(), generate_key()
    assert KeyRing.from_env({}) is None and KeyRing.from_env({ENV_VAR: "  "}) is None
    ring = KeyRing.from_env({ENV_VAR: f" {a} , {b} "})
    assert ring is not None and len(ring.ids) == 2
    explicit = resolve_key_ring(b, {ENV_VAR: a})
    assert explicit is not None and explicit.ids == (key_id(base64.urlsafe_b64decode(b)),)
    with pytest.raises(InvalidEncryptionKey, match="#2"):
        KeyRing.from_env({ENV_VAR: f"{a},nope"})
    unpadded = a.rstrip("=")
    assert KeyRing([unpadded]).ids == KeyRing([a]).ids


def test_a_new_process_with_the_key_in_its_environment_reads_the_real_secret(tmp_path: Path) -> None:
    """What a restart after a crash does: another process, the key from SAGA_ENCRYPTION_KEY."""
    key = generate_key()
    stored = dump_secret_json(Booking, booking(), keys=KeyRing([key]), context="s/input")
    path = tmp_path / "stored.json"
    path.write_text(json.dumps(stored))
    assert "4111-1111-1111-1111" not in path.read_text()
    script = (
        "import json, sys\n"
        "from tests.test_secrets import Booking\n"
        "from saga.secrets.keys import KeyRing, load_secret_json\n"
        "data = json.load(open(sys.argv[1]))\n"
        "b = load_secret_json(Booking, data, keys=KeyRing.from_env(), context='s/input')\n"
        "print(b.card.number.get_secret_value())\n"
    )
    env = {**os.environ, ENV_VAR: key}
    out = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "4111-1111-1111-1111"
    env[ENV_VAR] = generate_key()
    failed = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert failed.returncode != 0 and "UnknownEncryptionKey" in failed.stderr
    assert key not in failed.stderr


class Anything(BaseModel):
    secret: SecretStr
    raw: SecretBytes
    data: dict[str, Any] = {}


@settings(max_examples=60, deadline=None)
@given(st.text(), st.binary(), st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5),
                                                max_size=3), st.text(max_size=20))
def test_any_secret_round_trips(secret: str, raw: bytes, data: dict[str, Any], context: str) -> None:
    ring = KeyRing([generate_key()])
    value = Anything(secret=SecretStr(secret), raw=SecretBytes(raw), data=data)
    stored = json.loads(json.dumps(dump_secret_json(Anything, value, keys=ring, context=context)))
    back = load_secret_json(Anything, stored, keys=ring, context=context)
    assert back.secret.get_secret_value() == secret and back.raw.get_secret_value() == raw
    assert back.data == data
    assert redact_json(stored)["secret"] == MASK


def test_a_generated_key_never_looks_like_a_command_line_option() -> None:
    # one key in 64 started with "-", and `saga --encryption-key -abc…` then failed to parse
    keys = [generate_key() for _ in range(2000)]
    assert not [k for k in keys if k.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(k)) == 32 for k in keys)

"""Secret fields kept out of the log: AES-GCM envelopes for ``SecretStr`` and ``SecretBytes``.

A field typed :class:`pydantic.SecretStr` or :class:`pydantic.SecretBytes` in
a saga's input model or a step's output model is stored as an envelope::

    {"$saga_secret": {"v": 1, "kind": "str", "kid": "<key id>", "nonce": "<b64>", "ct": "<b64>"}}

encrypted with AES-GCM under a 32-byte key, a fresh random 96-bit nonce per
value, and associated data that binds the envelope to where it is stored
(the caller's ``context``, such as the saga id and step, and the field's
path in the value): an envelope copied to another saga or another field does
not decrypt. The key id is derived from the key (never the key itself), so
a :class:`KeyRing` holding the old and the new key reads values written
under either while new values use the first.

Keys are written as URL-safe base64 of 32 random bytes (:func:`generate_key`);
``SAGA_ENCRYPTION_KEY`` holds one key, or several separated by commas (the
first encrypts, all decrypt).

:func:`dump_secret_json` / :func:`load_secret_json` turn a model into stored
JSON and back (steps get the real secrets, including after a restart);
:func:`redact_json` and :func:`display_json` give the form people see, where
every secret is ``**********``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic_core import to_jsonable_python

from saga.errors import InvalidInput, SagaError
from saga.text import count

__all__ = [
    "ENV_VAR",
    "MASK",
    "EncryptionKeyMissing",
    "InvalidEncryptionKey",
    "KeyRing",
    "SecretDecryptionFailed",
    "SecretError",
    "UnknownEncryptionKey",
    "display_json",
    "dump_secret_json",
    "generate_key",
    "has_secret_fields",
    "is_envelope",
    "key_id",
    "load_secret_json",
    "open_json",
    "redact_json",
    "reseal_json",
    "resolve_key_ring",
]

ENV_VAR = "SAGA_ENCRYPTION_KEY"
"""The environment variable that holds the key ring (keys separated by commas)."""

MASK = "**********"
"""What a secret looks like wherever people read it."""

ENVELOPE = "$saga_secret"
_VERSION = 1
_KEY_BYTES = 32
_NONCE_BYTES = 12

M = TypeVar("M", bound=BaseModel)


class SecretError(SagaError):
    """A secret value could not be encrypted or decrypted."""


class EncryptionKeyMissing(SecretError):
    """This value has secret fields and no encryption key is set: set SAGA_ENCRYPTION_KEY
    (``saga key generate`` prints a new key) or pass ``encryption_key=``."""


class InvalidEncryptionKey(SecretError, InvalidInput):
    """An encryption key must be 32 bytes written as URL-safe base64 (``saga key generate``)."""


class UnknownEncryptionKey(SecretError):
    """A stored secret names a key id that no configured key has."""


class SecretDecryptionFailed(SecretError):
    """A stored secret does not decrypt under its key: it was altered or moved."""


# -- keys ------------------------------------------------------------------------------------


def generate_key() -> str:
    """A new random key: 32 bytes from the OS's generator, as URL-safe base64 (44 characters).

    Never one that starts with ``-`` (one in 64 would), which a command line
    would take for an option (``--encryption-key -abc…``).
    """
    while True:
        key = base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).decode("ascii")
        if not key.startswith("-"):
            return key


def _decode_key(text: str, position: int) -> bytes:
    stripped = text.strip()
    try:
        raw = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _KEY_BYTES or not stripped.rstrip("=").replace("-", "").replace("_", "").isalnum():
        # the message never repeats the key: it may be a real one with a typo
        raise InvalidEncryptionKey(
            f"encryption key #{position + 1} is not 32 bytes of URL-safe base64 "
            f"({count(len(stripped), 'character')} given; `saga key generate` prints a valid key)"
        )
    return raw


def key_id(key: bytes) -> str:
    """The public id of a key: 16 hex digits of a SHA-256 over it (the key cannot be recovered)."""
    return hashlib.sha256(b"saga-coordinator key id\x00" + key).hexdigest()[:16]


class KeyRing:
    """Keys for secret fields: the first encrypts new values, every one decrypts."""

    __slots__ = ("_by_id", "_primary")

    def __init__(self, keys: Sequence[str]) -> None:
        """Build a ring from keys in text form (the first is used for new values).

        Raises :class:`InvalidEncryptionKey` if there is none or one is malformed.
        """
        if isinstance(keys, str) or not keys:
            raise InvalidEncryptionKey("a key ring needs a sequence of at least one key")
        decoded = [_decode_key(k, i) for i, k in enumerate(keys)]
        self._by_id = {key_id(k): AESGCM(k) for k in decoded}
        self._primary = key_id(decoded[0])

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """A ring from ``"key1,key2,..."`` (how ``SAGA_ENCRYPTION_KEY`` holds several keys)."""
        return cls([part for part in text.split(",") if part.strip()] or [text])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KeyRing | None:
        """The ring in ``SAGA_ENCRYPTION_KEY`` (``None`` if it is unset or blank)."""
        text = (os.environ if environ is None else environ).get(ENV_VAR, "")
        return cls.parse(text) if text.strip() else None

    @property
    def primary_id(self) -> str:
        """The id of the key new values are encrypted with."""
        return self._primary

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids of every key in the ring, the primary first."""
        return (self._primary, *(k for k in self._by_id if k != self._primary))

    def __repr__(self) -> str:
        return f"KeyRing(ids={list(self.ids)!r})"

    def encrypt(self, plain: bytes, aad: bytes) -> tuple[str, bytes, bytes]:
        """``(key id, nonce, ciphertext)`` of ``plain`` under the primary key."""
        nonce = os.urandom(_NONCE_BYTES)
        return self._primary, nonce, self._by_id[self._primary].encrypt(nonce, plain, aad)

    def decrypt(self, kid: str, nonce: bytes, ciphertext: bytes, aad: bytes, where: str) -> bytes:
        """The plain bytes; raises :class:`UnknownEncryptionKey` or :class:`SecretDecryptionFailed`."""
        aead = self._by_id.get(kid)
        if aead is None:
            raise UnknownEncryptionKey(
                f"the secret at {where} was encrypted with key id {kid}, which is not among the "
                f"configured keys ({', '.join(self.ids)}); add that key to {ENV_VAR}"
            )
        try:
            return aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise SecretDecryptionFailed(
                f"the secret at {where} (key id {kid}) does not decrypt: it was altered, "
                f"or moved from another saga or field"
            ) from None


def resolve_key_ring(
    key: str | KeyRing | None = None, environ: Mapping[str, str] | None = None
) -> KeyRing | None:
    """The ring to use: ``key`` if given (text as in ``SAGA_ENCRYPTION_KEY``), else the variable."""
    if isinstance(key, KeyRing):
        return key
    if key is not None:
        return KeyRing.parse(key)
    return KeyRing.from_env(environ)


# -- which models hold secrets ---------------------------------------------------------------


@functools.cache
def has_secret_fields(model: type[BaseModel]) -> bool:
    """Whether ``model`` has a ``SecretStr``/``SecretBytes`` field anywhere: nested models,
    lists, tuples, dicts, optional and union fields included (remembered per model)."""
    return _holds_secret(model, set())


def _holds_secret(tp: Any, seen: set[int]) -> bool:
    if isinstance(tp, type):
        if issubclass(tp, SecretStr | SecretBytes):
            return True
        if issubclass(tp, BaseModel):
            if id(tp) in seen:
                return False
            seen.add(id(tp))
            return any(_holds_secret(f.annotation, seen) for f in tp.model_fields.values())
    origin = typing.get_origin(tp)
    if origin is None and not isinstance(tp, types.UnionType):
        return False
    return any(_holds_secret(arg, seen) for arg in typing.get_args(tp) if not isinstance(arg, str | int))


# -- envelopes -------------------------------------------------------------------------------


def is_envelope(value: object) -> bool:
    """Whether a stored JSON value is an encrypted secret."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(ENVELOPE), dict)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _unb64(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise SecretDecryptionFailed(f"the secret at {where} is not a well-formed envelope")
    try:
        return base64.urlsafe_b64decode(text)
    except (binascii.Error, ValueError):
        raise SecretDecryptionFailed(f"the secret at {where} is not a well-formed envelope") from None


def _aad(context: str, path: str) -> bytes:
    return f"saga-secret v{_VERSION}\x00{context}\x00{path}".encode()


def _seal(secret: SecretStr | SecretBytes, ring: KeyRing, context: str, path: str) -> dict[str, Any]:
    if isinstance(secret, SecretStr):
        kind, plain = "str", secret.get_secret_value().encode("utf-8")
    else:
        kind, plain = "bytes", secret.get_secret_value()
    kid, nonce, ct = ring.encrypt(plain, _aad(context, path))
    return {ENVELOPE: {"v": _VERSION, "kind": kind, "kid": kid, "nonce": _b64(nonce), "ct": _b64(ct)}}


def _open(envelope: dict[str, Any], ring: KeyRing, context: str, path: str) -> str | bytes:
    body = envelope[ENVELOPE]
    where = path or "$"
    if body.get("v") != _VERSION or body.get("kind") not in ("str", "bytes"):
        raise SecretDecryptionFailed(
            f"the secret at {where} has an envelope version this library does not read"
        )
    kid = str(body.get("kid"))
    plain = ring.decrypt(kid, _unb64(body.get("nonce"), where), _unb64(body.get("ct"), where),
                         _aad(context, path), where)
    return plain.decode("utf-8") if body["kind"] == "str" else plain


def _child(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def _walk_seal(value: Any, ring: KeyRing | None, context: str, path: str) -> Any:
    if isinstance(value, SecretStr | SecretBytes):
        if ring is None:  # pragma: no cover - checked against the model before the walk
            raise EncryptionKeyMissing()
        return _seal(value, ring, context, path)
    if isinstance(value, dict):
        return {k: _walk_seal(v, ring, context, _child(path, str(k))) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk_seal(v, ring, context, _child(path, i)) for i, v in enumerate(value)]
    if isinstance(value, set | frozenset) and any(isinstance(v, SecretStr | SecretBytes) for v in value):
        raise InvalidInput(f"secret values in a set at {path or '$'} cannot be stored: use a list")
    return value


def _walk_open(value: Any, ring: KeyRing | None, context: str, path: str) -> Any:
    if is_envelope(value):
        if ring is None:
            raise EncryptionKeyMissing(
                f"the value holds an encrypted secret at {path or '$'} and no encryption key is set: "
                f"set {ENV_VAR} or pass encryption_key="
            )
        return _open(value, ring, context, path)
    if isinstance(value, dict):
        return {k: _walk_open(v, ring, context, _child(path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk_open(v, ring, context, _child(path, i)) for i, v in enumerate(value)]
    return value


def dump_secret_json(
    model: type[M], value: M | Mapping[str, Any], *, keys: KeyRing | None, context: str = ""
) -> Any:
    """``value`` (an instance of ``model``, or data it validates) as JSON with every secret
    field replaced by an encrypted envelope.

    Raises :class:`EncryptionKeyMissing` when ``model`` has secret fields and
    ``keys`` is ``None`` (whether or not this value fills them), and
    :class:`~saga.InvalidInput` if ``value`` does not fit ``model``; nothing
    is encrypted or returned then. ``context`` is bound into every envelope:
    pass the same text to :func:`load_secret_json`.
    """
    if keys is None and has_secret_fields(model):
        raise EncryptionKeyMissing(
            f"{model.__name__} has secret fields and no encryption key is set: set {ENV_VAR} "
            f"(`saga key generate` prints a new key) or pass encryption_key="
        )
    if not isinstance(value, model):
        try:
            value = model.model_validate(value)
        except ValidationError as e:
            raise InvalidInput(f"the value does not fit {model.__name__}: {e.errors()[0]['msg']}") from None
    python = value.model_dump(mode="python")  # keeps SecretStr/SecretBytes objects, unlike mode="json"
    return to_jsonable_python(_walk_seal(python, keys, context, ""))


def load_secret_json(model: type[M], data: Any, *, keys: KeyRing | None, context: str = "") -> M:
    """The model instance stored by :func:`dump_secret_json`, with the real secret values.

    Raises :class:`EncryptionKeyMissing`, :class:`UnknownEncryptionKey` (naming
    the key id) or :class:`SecretDecryptionFailed`; never shows a key or a secret.
    """
    return model.model_validate(_walk_open(data, keys, context, ""))


def open_json(data: Any, keys: KeyRing | None, context: str = "") -> Any:
    """Stored JSON with every envelope opened to its plain ``str`` or ``bytes``: for comparing
    two stored values, never for showing one. Raises as :func:`load_secret_json`."""
    return _walk_open(data, keys, context, "")


def reseal_json(data: Any, keys: KeyRing | None, source: str, target: str) -> Any:
    """Stored JSON with every envelope opened under context ``source`` and sealed again under
    ``target`` (at the same path, with the primary key): how sealed values move to another saga.

    Raises as :func:`load_secret_json`; never shows a key or a secret.
    """
    return _walk_reseal(data, keys, source, target, "")


def _walk_reseal(value: Any, ring: KeyRing | None, source: str, target: str, path: str) -> Any:
    if is_envelope(value):
        plain = _walk_open(value, ring, source, path)
        assert ring is not None  # opening needed it
        secret = SecretStr(plain) if isinstance(plain, str) else SecretBytes(plain)
        return _seal(secret, ring, target, path)
    if isinstance(value, dict):
        return {k: _walk_reseal(v, ring, source, target, _child(path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk_reseal(v, ring, source, target, _child(path, i)) for i, v in enumerate(value)]
    return value


def redact_json(data: Any) -> Any:
    """Stored JSON as people may see it: every encrypted secret becomes ``**********``.

    Needs no key and no model, so ``show``, ``history`` and ``export`` can use it on any log.
    """
    if is_envelope(data):
        return MASK
    if isinstance(data, dict):
        return {k: redact_json(v) for k, v in data.items()}
    if isinstance(data, list):
        return [redact_json(v) for v in data]
    return data


def display_json(value: BaseModel) -> Any:
    """A model as JSON for people: every secret field is ``**********``."""
    return value.model_dump(mode="json")


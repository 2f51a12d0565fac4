"""The hash chain the append writes: each event's SHA-256 over its fields and the exact text of
its data as stored, chained to the previous event of its saga.

Each event stores ``hash`` = SHA-256 (hex) over the UTF-8 of
``[saga_id,seq,type,schema_version,DATA,previous_hash,recorded_at]``: a JSON
array without spaces whose fields are written as canonical JSON (strings as
:func:`json.dumps` writes them, ``previous_hash`` ``null`` for ``seq`` 1,
``recorded_at`` in whole microseconds since the epoch), and whose ``DATA`` is
the event's data exactly as the store wrote it (:func:`stored_text`: compact
JSON, keys in the event's order, UTF-8). That is hash version 3
(:func:`stored_event_hash`): each event's data is encoded once, and the hash
covers the bytes in the database.

Events written before kept their versions in the row's ``hash_version``:
version 2 covered the canonical JSON of the data (keys sorted, integral
floats as integers) instead of its text, and version 1 left ``recorded_at``
out too (:func:`event_hash`). A chain's versions never go down.
:mod:`saga.store.audit` checks the chains, each event by its own version.
"""

from __future__ import annotations

import hashlib
import json
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

__all__ = [
    "HASH_VERSION", "canonical_json", "canonical_text", "event_hash", "recorded_micros",
    "stored_event_hash", "stored_text",
]

HASH_VERSION = 3
"""The hash version every new event is written with: :func:`stored_event_hash` (versions 1
and 2: :func:`event_hash`)."""

_STORED = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def stored_text(data: Any) -> str:
    """An event's data as the stores write it, and as hash version 3 covers it: compact JSON,
    keys in their order, UTF-8, no NaN or infinity (which JSON cannot hold)."""
    return _STORED.encode(data)


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)
"""Sorted keys, no spaces, UTF-8, no NaN: built once (``json.dumps`` with options builds an
encoder per call)."""


def canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON: sorted keys, no spaces, UTF-8, no NaN or infinity, and a
    float with an integral value written as the integer (``1.0`` and ``1e16`` as ``1`` and
    ``10000000000000000``), since a database may hand back either form of the same number."""
    return _CANONICAL.encode(_numbers(value)).encode("utf-8")


def _numbers(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_numbers(v) for v in value]
    return value


_INTEGRAL_FLOAT_MARKS = (".0,", ".0]", ".0}", "e+")
"""How Python writes a float with an integral value: ``1.0`` before a delimiter, or ``1e+16``."""


def canonical_text(value: Any) -> str:
    """:func:`canonical_json` as text, the common case fast: the JSON is written once (in C),
    and only if it may hold a float with an integral value (a mark of one appears in it, if
    only inside a string) is it written again with those floats made integers."""
    text = _CANONICAL.encode(value)
    if any(mark in text for mark in _INTEGRAL_FLOAT_MARKS) or text.endswith(".0"):
        return canonical_json(value).decode("utf-8")
    return text


def recorded_micros(recorded_at: float) -> int:
    """A recording time (epoch seconds, as stored) in whole microseconds, as the hash covers it.

    A time stored as a double keeps its microsecond exactly for millennia, so
    a time read back from either database, or as a ``datetime``'s
    ``timestamp()``, gives the same whole number.
    """
    return round(recorded_at * 1_000_000)


def stored_event_hash(  # noqa: PLR0917 - the fields hashed, in their order
    saga_id: str, seq: int, type_: str, schema_version: int, text: str, previous_hash: str | None,
    recorded_at: float,
) -> str:
    """The SHA-256 (hex) of hash version 3, which chains one event to the previous event of its
    saga: over ``[saga_id,seq,type,schema_version,TEXT,previous_hash,recorded_at]``, where
    ``text`` is the data's JSON text exactly as stored (:func:`stored_text`) and
    ``recorded_at`` (epoch seconds) is hashed as whole microseconds."""
    body = (f"[{encode_basestring(saga_id)},{int(seq)},{encode_basestring(type_)},"
            f"{int(schema_version)},{text},"
            f"{'null' if previous_hash is None else encode_basestring_ascii(previous_hash)},"
            f"{recorded_micros(recorded_at)}]")
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def event_hash(  # noqa: PLR0917 - the fields hashed, in their order
    saga_id: str, seq: int, type_: str, schema_version: int, data: Any, previous_hash: str | None,
    recorded_at: float | None = None,
) -> str:
    """The SHA-256 (hex) of hash versions 1 and 2, as events written before version 3 carry it:
    over the canonical JSON of ``[saga_id, seq, type, schema_version, data, previous_hash,
    recorded_at]`` (hash version 2, ``recorded_at`` in epoch seconds, hashed as whole
    microseconds), or without ``recorded_at`` when it is ``None`` (hash version 1)."""
    # the canonical JSON of the list, written piece by piece (the same text, at less cost)
    when = "" if recorded_at is None else f",{recorded_micros(recorded_at)}"
    body = (f"[{encode_basestring(saga_id)},{int(seq)},{encode_basestring(type_)},"
            f"{int(schema_version)},{canonical_text(data)},"
            f"{'null' if previous_hash is None else encode_basestring_ascii(previous_hash)}{when}]")
    return hashlib.sha256(body.encode("utf-8")).hexdigest()

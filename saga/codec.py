"""Turning step inputs and outputs into JSON values and back."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from pydantic import BaseModel

__all__ = ["MAX_DEPTH", "InvalidValue", "from_json_text", "printable", "to_json_value"]

MAX_DEPTH = 200
"""How deeply lists and objects may nest in a stored value."""

_BIG_INT_BITS = 13_000  # below this, an int always has fewer than 4,300 digits


class InvalidValue(ValueError):
    """The value cannot be stored as JSON."""


def to_json_value(value: Any) -> Any:
    """``value`` as plain JSON (dicts, lists, strings, numbers, booleans, None).

    A pydantic model becomes its JSON dump; anything else that is not JSON
    (sets, bytes, arbitrary objects, NaN) is refused rather than guessed at,
    so what a step returns is exactly what a replay reads back. So is what
    JSON can say but the log cannot store and read back: a string that is
    not valid Unicode (a lone surrogate, as ``os.listdir`` returns for a
    file name that is not UTF-8) or holds NUL, an int too long to print
    (``sys.get_int_max_str_digits``), lists and objects nested more than
    :data:`MAX_DEPTH` deep. The message of :class:`InvalidValue` is always
    printable.
    """
    try:
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        return _check(value, 0)
    except _Bad as bad:
        path = "$" + "".join(reversed(bad.path))
        raise InvalidValue(f"{printable(path[:200])}: {bad.what}") from None
    except RecursionError:
        raise InvalidValue(f"$: nested more than {MAX_DEPTH} levels deep") from None


def from_json_text(text: str) -> Any:
    """The value JSON ``text`` holds, if the log can store it (see :func:`to_json_value`).

    Raises :class:`InvalidValue`, with a printable message that never repeats
    the text, when the text is not JSON (``NaN`` and ``Infinity`` are not
    JSON either) or holds what the log cannot store, however deeply nested
    or long its numbers: parsing never raises anything else.
    """
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except _Bad as bad:
        raise InvalidValue(bad.what) from None
    except json.JSONDecodeError as e:
        raise InvalidValue(f"not valid JSON: {e}") from None
    except RecursionError:
        raise InvalidValue(f"$: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError:  # the only other error json raises: an int too long to convert
        raise InvalidValue(f"an int of more than {sys.get_int_max_str_digits()} digits") from None
    return to_json_value(value)


def _no_constant(name: str) -> Any:
    raise _Bad(f"{name} is not a JSON number")


class _Bad(Exception):
    """What is wrong, and where (the keys from the bad value up, added while unwinding)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.path: list[str] = []


def _check(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is str:  # the usual cases first, by exact type
        return value if value.isascii() and "\x00" not in value else _string(value)
    if value is None or kind is bool or (kind is int and value.bit_length() <= _BIG_INT_BITS):
        return value
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        if value.bit_length() > _BIG_INT_BITS:
            try:
                str(value)
            except ValueError:
                raise _Bad(f"an int of more than {sys.get_int_max_str_digits()} digits") from None
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad(f"{value!r} is not a JSON number")
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if depth >= MAX_DEPTH and isinstance(value, (dict, list, tuple)):
        raise _Bad(f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _Bad(f"object key {printable(repr(k))[:100]} is not a string")
            try:
                out[_string(k)] = _check(v, depth + 1)
            except _Bad as bad:
                bad.path.append(f".{k}")
                raise
        return out
    if isinstance(value, (list, tuple)):
        items = []
        for i, v in enumerate(value):
            try:
                items.append(_check(v, depth + 1))
            except _Bad as bad:
                bad.path.append(f"[{i}]")
                raise
        return items
    raise _Bad(f"{type(value).__name__} is not a JSON value")


def _string(value: str) -> str:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Bad(f"a string that is not valid Unicode: {printable(value[:80])!r}") from None
    if "\x00" in value:
        raise _Bad("a string holding NUL (\\u0000)")
    return value


def printable(text: str) -> str:
    """``text`` with what no log can store (lone surrogates, NUL) escaped as ``\\udcff``."""
    if text.isascii():
        return text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")

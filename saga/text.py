"""Text made to show a person: text from outside (a service's error, a saga id, a reason)
made safe, and counts and names put into English.

:func:`escape` keeps a terminal from obeying control sequences hidden in the
text, and :func:`printable_json` does the same for JSON without changing what
it says; :func:`shorten` keeps a huge value from swamping a message;
:func:`count` and :func:`article` say "1 saga", "2 sagas", "an order".
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["article", "count", "escape", "printable_json", "shorten"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def escape(text: str) -> str:
    """``text`` with every character that is not printable written as an escape (``\\x1b``,
    ``\\r``, ``\\u202e``): control characters (C0, DEL, C1: escape sequences, carriage
    returns, backspaces, bells, newlines), format characters (bidirectional overrides,
    zero-width characters), separators other than the space, surrogates and unassigned
    code points. Printable text, including non-ASCII letters, is unchanged."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def shorten(text: str, limit: int = 60) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ``limit`` characters
    followed by how long it was: ``"xxx…(10,000 characters)"``."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…({len(text):,} characters)"


def printable_json(value: Any) -> str:
    """``value`` as compact JSON in which every character :func:`escape` would escape is
    written as a JSON escape (``\\u202e``): safe to show, and it parses back to ``value``.
    Printable text, including non-ASCII letters, is kept as it is."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if text.isprintable():
        return text
    # json.dumps escaped the quotes, backslashes and C0 controls: what is left is inside strings
    return "".join(c if c.isprintable() else _json_escaped(c) for c in text)


def _json_escaped(c: str) -> str:
    n = ord(c)
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def count(n: int, noun: str) -> str:
    """``n`` with ``noun``, plural (an added ``s``) unless ``n`` is 1: ``"1 saga"``,
    ``"0 sagas"``."""
    return f"{n} {noun if n == 1 else noun + 's'}"


def article(word: str) -> str:
    """``word`` after its indefinite article, chosen by its first letter (a name is read as it
    is spelled): ``"an order"``, ``"a saga"``."""
    return f"{'an' if word[:1].lower() in _VOWELS else 'a'} {word}"


_VOWELS = frozenset("aeiou")

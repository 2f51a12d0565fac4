"""Text from outside (a service's error, a saga id, a reason) made safe to show a person.

:func:`escape` keeps a terminal from obeying control sequences hidden in the
text; :func:`shorten` keeps a huge value from swamping a message.
"""

from __future__ import annotations

__all__ = ["escape", "shorten"]

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

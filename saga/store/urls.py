"""Database URLs: parsing them into one clear error, and showing them without secrets."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from saga.errors import InvalidInput

__all__ = ["parse", "redact", "scheme_of", "shorten"]

EXAMPLES = "sqlite:///saga.db, postgresql+psycopg://user@host/db or memory://"

_SECRET_QUERY = re.compile(r"([?&][^=&#]*(?:pass|secret|token|key)[^=&#]*=)[^&#]*", re.IGNORECASE)
"""A query argument that may hold a credential (``password``, ``sslpassword``, ...): its value."""


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scheme_of(url: str) -> str | None:
    """The URL's scheme (``sqlite``, ``postgresql+psycopg``, ...), or ``None`` if it has none."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme or not all(c.isalnum() or c in "+-." for c in scheme):
        return None
    return scheme


def redact(url: str) -> str:
    """``url`` as it may be shown: passwords masked (after the user name, and the value of
    every query argument whose name says it holds one: ``password``, ``sslpassword``, any
    ``...secret``, ``...token`` or ``...key``), long values shortened.

    A string without a scheme is never shown (it may be anything, a password included).
    """
    if scheme_of(url) is None:
        return "(a value without a scheme)"
    try:
        shown = sa.make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        scheme, _, rest = url.partition("://")
        # unparseable: keep the scheme, mask anything that may be credentials
        shown = f"{scheme}://***@{rest.rpartition('@')[2]}" if "@" in rest else url
    return shorten(_SECRET_QUERY.sub(r"\1***", shown))


def parse(url: object) -> sa.URL:
    """``url`` parsed; raises ``InvalidInput`` (one line, no secret) if it is not a database URL."""
    if url is None:
        raise InvalidInput(f"a database URL is needed, e.g. {EXAMPLES}")
    if not isinstance(url, str):
        raise InvalidInput(f"a database URL must be a string, not {shorten(repr(url))}")
    if scheme_of(url) is None:
        raise InvalidInput(f"not a database URL: it has no scheme (try {EXAMPLES})")
    try:
        return sa.make_url(url)
    except ValueError:
        raise InvalidInput(f"not a database URL: {redact(url)} (is the port a number?)") from None
    except ArgumentError:
        raise InvalidInput(f"not a database URL: {redact(url)} (try {EXAMPLES})") from None

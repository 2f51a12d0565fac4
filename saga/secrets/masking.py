"""Hiding a saga's secrets in the text an attempt leaves behind.

A step's error message, its calls' targets and errors, and its telemetry may
quote a secret the attempt was given. :func:`attempt_mask` gathers the plain
text of those secrets when the attempt is prepared, and the :class:`Mask` it
returns hides them in every text on its way out, however the text spells them.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr

from saga.secrets.keys import MASK, has_secret_fields

__all__ = ["FRAGMENT", "Mask", "attempt_mask"]

_SHORTEST_MASKED = 3
"""Secrets shorter than this are not looked for in text (they would mask ordinary words)."""

FRAGMENT = 12
"""A run of this many characters of a secret is masked wherever it shows: text often quotes a
value cut short (pydantic shows a long input as its first and last 24 characters), and a secret
cut in two is still a secret."""


class Mask:
    """The plain text of the secrets an attempt was given, and the one way to hide them.

    ``mask(text)`` is ``text`` with each secret replaced by ``**********``
    however the text came to hold it: as it is; quoted by ``repr``, ``ascii``
    or JSON (a dict or list in a message, pydantic's ``input_value``); as the
    ``repr`` of its UTF-8 bytes; percent-encoded as a URL path or query
    carries it. Any run of :data:`FRAGMENT` or more characters of one of
    those spellings is masked too, so a secret that something cut short does
    not show either. Secrets shorter than three characters are not looked for.
    Text that holds no secret comes back as the same object.
    """

    __slots__ = ("_grams", "_secrets", "_short")

    def __init__(self, secrets: Iterable[str | bytes]) -> None:
        self._secrets = tuple(secrets)
        self._short: list[str] | None = None  # built on first use: most attempts never need it
        self._grams: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        hidden = self._hidden(text)
        if not hidden:
            return text
        parts: list[str] = []
        at = 0
        for start, end in hidden:
            parts += (text[at:start], MASK)
            at = end
        parts.append(text[at:])
        return "".join(parts)

    def _hidden(self, text: str) -> list[tuple[int, int]]:
        """Where ``text`` shows a secret: sorted spans that neither overlap nor touch."""
        if self._short is None:
            self._prepare()
        assert self._short is not None
        spans = []
        for form in self._short:
            i = text.find(form)
            while i >= 0:
                spans.append((i, i + len(form)))
                i = text.find(form, i + 1)
        if grams := self._grams:
            spans += [(i, i + FRAGMENT) for i in range(len(text) - FRAGMENT + 1)
                      if text[i:i + FRAGMENT] in grams]
        spans.sort()
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def _prepare(self) -> None:
        forms = {f for s in self._secrets for f in _spellings(s) if len(f) >= _SHORTEST_MASKED}
        self._grams = frozenset(f[i:i + FRAGMENT] for f in forms if len(f) >= FRAGMENT
                                for i in range(len(f) - FRAGMENT + 1))
        self._short = [f for f in forms if len(f) < FRAGMENT]


def _spellings(secret: str | bytes) -> set[str]:
    """The ways text commonly holds ``secret`` (see :class:`Mask`)."""
    if isinstance(secret, bytes):
        forms = _quoted(repr, secret)
        try:
            return forms | _spellings(secret.decode())
        except UnicodeDecodeError:
            return forms
    forms = {secret, *_quoted(repr, secret), *_quoted(ascii, secret),
             *_quoted(repr, secret.encode("utf-8", "surrogatepass")),
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    for safe in ("", "/"):
        forms |= {urllib.parse.quote(secret, safe=safe, errors="surrogatepass"),
                  urllib.parse.quote_plus(secret, safe=safe, errors="surrogatepass")}
    return forms


def _quoted(quote: Callable[[Any], str], value: str | bytes) -> set[str]:
    """``value`` as ``quote`` (``repr`` or ``ascii``) writes it inside a longer text, between
    either kind of quote."""
    if isinstance(value, bytes):  # b'...'; with both quotes in it, ' is escaped as \'
        return {quote(value)[2:-1], quote(value + b"'\"")[2:-4]}
    return {quote(value)[1:-1], quote(value + "'\"")[1:-4]}


def attempt_mask(*given: Any) -> Mask | None:
    """The mask of an attempt given these values (its input, the results it sees): every
    secret field's plain text. ``None`` when they hold no secret."""
    found: list[str | bytes] = []
    for value in given:
        if isinstance(value, BaseModel) and has_secret_fields(type(value)):
            _collect(value.model_dump(mode="python"), found)
    return Mask(found) if found else None


def _collect(value: Any, found: list[str | bytes]) -> None:
    if isinstance(value, SecretStr | SecretBytes):
        found.append(value.get_secret_value())
    elif isinstance(value, Mapping):
        for v in value.values():
            _collect(v, found)
    elif isinstance(value, list | tuple):
        for v in value:
            _collect(v, found)

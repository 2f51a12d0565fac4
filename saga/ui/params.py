"""The query parameters of the pages, each checked here and nowhere else.

A route names the parameters it takes; :class:`Query` refuses any other,
any given twice, and any value its kind cannot take, with
:class:`~saga.InvalidInput` naming the parameter in one short line (the
pages answer it with 400). An empty value counts as absent, as a form sends
its empty fields.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from saga.errors import InvalidInput
from saga.store.base import check_saga_id
from saga.text import shorten
from saga.timespec import parse_time

__all__ = ["MAX_TEXT", "Query", "saga_id"]

MAX_TEXT = 200
"""The longest name, step, error type or saga id a filter can match (the columns' widths)."""

_MAX_VALUE = 1000
"""The longest value any parameter takes (a cursor holds a saga id, encoded)."""

_MAX_TIME = 64
"""The longest time a parameter takes (``2026-05-01T12:00:00.000000+00:00`` and the like)."""


def _shown(text: str) -> str:
    return repr(shorten(text))


def saga_id(text: str, name: str = "saga") -> str:
    """``text`` as a saga id: the store's rule, a printable string of 1 to 200 characters."""
    if len(text) > MAX_TEXT or not text.isprintable():
        raise InvalidInput(f"{name} must be a saga id (printable, 1 to {MAX_TEXT} characters), "
                           f"got {_shown(text)}")
    return check_saga_id(text)


class Query:
    """The query string of one request, for a route that takes the parameters ``takes``."""

    def __init__(self, items: Iterable[tuple[str, str]], takes: Collection[str]) -> None:
        self._values: dict[str, str] = {}
        seen: set[str] = set()
        for name, value in items:
            if name not in takes:
                accepted = ", ".join(takes) if takes else "no parameters"
                raise InvalidInput(f"unknown parameter {_shown(name)}: this page takes {accepted}")
            if name in seen:
                raise InvalidInput(f"{name} is given more than once")
            seen.add(name)
            if len(value) > _MAX_VALUE:
                raise InvalidInput(f"{name} is too long ({len(value):,} characters)")
            if not value.isprintable():
                raise InvalidInput(f"{name} must be printable text, got {_shown(value)}")
            if value.strip():
                self._values[name] = value

    def raw(self, name: str) -> str | None:
        """The value of ``name`` as given (printable, at most 1,000 characters), ``None`` if absent."""
        return self._values.get(name)

    def _stripped(self, name: str) -> str | None:
        value = self.raw(name)
        return None if value is None else value.strip()

    def text(self, name: str) -> str | None:
        """A name, step or error type to match: at most :data:`MAX_TEXT` characters."""
        value = self._stripped(name)
        if value is not None and len(value) > MAX_TEXT:
            raise InvalidInput(f"{name} is at most {MAX_TEXT} characters, got {_shown(value)}")
        return value

    def choice(self, name: str, choices: Collection[str]) -> str | None:
        """One of ``choices``."""
        value = self._stripped(name)
        if value is not None and value not in choices:
            raise InvalidInput(f"{name} must be one of {', '.join(choices)}, got {_shown(value)}")
        return value

    def whole(self, name: str, *, low: int, high: int) -> int | None:
        """A whole number from ``low`` to ``high``, in ASCII digits."""
        value = self._stripped(name)
        if value is None:
            return None
        if not (value.isascii() and value.isdigit() and len(value) <= len(str(high))
                and low <= int(value) <= high):
            raise InvalidInput(f"{name} must be a whole number from {low:,} to {high:,}, got {_shown(value)}")
        return int(value)

    def time(self, name: str, *, now: datetime) -> datetime | None:
        """A moment, as ``saga list --since`` takes it (ISO 8601, or ``2h``, ``7d`` ago)."""
        value = self._stripped(name)
        if value is None:
            return None
        if len(value) > _MAX_TIME:
            raise InvalidInput(f"{name} must be a time (ISO 8601, or 2h, 7d ago), got {_shown(value)}")
        return parse_time(value, now=now, option=name)

    def saga_id(self, name: str) -> str | None:
        """A saga id (see :func:`saga_id`)."""
        value = self.raw(name)
        return None if value is None else saga_id(value, name)

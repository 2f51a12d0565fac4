"""Times given on the command line: ISO 8601, or relative to now such as ``2h`` or ``7d``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from saga.errors import InvalidInput

__all__ = ["parse_time", "parse_window"]

_RELATIVE = re.compile(r"(\d{1,9})([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_EXPECTED = (
    "an ISO 8601 date or time (2026-05-01, 2026-05-01T12:00:00Z) or a duration ago (30s, 15m, 2h, 7d, 2w)"
)


def parse_time(text: str, *, now: datetime, option: str = "time") -> datetime:
    """The moment ``text`` names, as an aware UTC datetime.

    ``text`` is ISO 8601 (a date means its midnight; no zone means UTC) or a
    whole number of seconds, minutes, hours, days or weeks before ``now``
    (``30s``, ``15m``, ``2h``, ``7d``, ``2w``). ``now`` must be aware.
    Raises :class:`~saga.InvalidInput` naming ``option`` otherwise.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    stripped = text.strip() if isinstance(text, str) else ""
    if not stripped:
        raise InvalidInput(f"{option}: expected {_EXPECTED}, got {text!r}")
    relative = _RELATIVE.fullmatch(stripped)
    if relative:
        amount, unit = int(relative[1]), relative[2]
        try:
            return (now - timedelta(**{_UNITS[unit]: amount})).astimezone(UTC)
        except OverflowError:
            raise InvalidInput(f"{option}: {text!r} reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise InvalidInput(f"{option}: expected {_EXPECTED}, got {text!r}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{option}: {text!r} is out of range in UTC") from None


def parse_window(
    since: str | None, until: str | None, *, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` parsed together; raises :class:`~saga.InvalidInput` if since > until."""
    start = parse_time(since, now=now, option="--since") if since is not None else None
    end = parse_time(until, now=now, option="--until") if until is not None else None
    if start is not None and end is not None and start > end:
        raise InvalidInput(
            f"--since ({start.isoformat()}) is after --until ({end.isoformat()}): nothing can match"
        )
    return start, end

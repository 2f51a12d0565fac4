"""What every backend does alike when it writes and reads a saga's events: the JSON of an event
(within the payload limit), the check of a page of ``load``, and when an append keeps the
wake-up time there is."""

from __future__ import annotations

import json
from typing import Any

from saga import events as ev
from saga.errors import InvalidInput, PayloadTooLarge
from saga.store.hashing import stored_text

__all__ = ["check_page", "dumps", "encoded", "wake_kept"]


def wake_kept(stored: float | None, new: float | None, now: float) -> bool:
    """Whether an append leaves the saga's wake-up time ``stored`` as it is rather than set it
    to ``new`` (epoch seconds): when both have come by ``now``, either makes the saga due now,
    and the earlier one keeps it first in line. Rewriting it would move the row's entry in
    the wake-up index on every append (on PostgreSQL, it would also rule out an update in
    place of the row with all its indexes)."""
    return stored is not None and new is not None and stored <= new <= now


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    """Compact JSON (``json.dumps`` with options builds an encoder per call; this one is built
    once)."""
    return _COMPACT.encode(value)


def encoded(saga_id: str, event: ev.Event, max_payload: int) -> tuple[dict[str, Any], str]:
    """An event's data, and the JSON text stored and hashed (:func:`~saga.store.hashing.stored_text`:
    keys in the order the event gives them, as a reader of the log expects them); raises
    ``PayloadTooLarge`` above ``max_payload`` bytes."""
    data = event.to_data()
    text = stored_text(data)
    # UTF-8 takes at most 4 bytes a character: most texts are known to fit without encoding
    if len(text) * 4 > max_payload and (size := len(text.encode())) > max_payload:
        raise PayloadTooLarge(
            f"{event.type_name()} for saga {saga_id} is {size} bytes; the store accepts "
            f"at most {max_payload}"
        )
    return data, text


def check_page(after: int, limit: int | None) -> None:
    """Reject a page of :meth:`EventLog.load` that is not ``after >= 0``, ``limit >= 1`` or ``None``."""
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise InvalidInput(f"after must be a whole number >= 0, got {after!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInput(f"limit must be a positive whole number or None, got {limit!r}")

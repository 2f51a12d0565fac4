"""One append as a SQL backend writes it (alone, or batched with others'), and why an append
was refused."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from saga.errors import ConcurrencyError, LeaseHeld, SagaError, SagaNotFound
from saga.store.statements import from_ts

__all__ = ["Append", "refusal"]


@dataclass(frozen=True, slots=True)
class Append:
    """One append as the store writes it: alone, or in a batch with others."""

    saga_id: str
    expected: int
    rows: list[dict[str, Any]]  # each with "data" (the JSON text, as measured, written and hashed)
    chained: bool  # the rows' hashes are chained from the previous event's (else: look it up)
    failed_step: str | None  # a StepFailed's step: sagas.failed_step
    status: str
    wake_at: float | None
    now: float
    owner: str | None  # None: an operator's append, not fenced by the lease
    lease_until: float | None  # None: the owner lets go of the lease
    wake: bool  # the saga becomes due with no one holding it: notify idle workers

    def params(self) -> dict[str, Any]:
        """Parameters of ``APPEND`` (or ``APPEND_FENCED`` when there is an owner)."""
        params: dict[str, Any] = {
            "b_saga_id": self.saga_id,
            "b_expected": self.expected,
            "b_last_seq": self.expected + len(self.rows),
            "b_status": self.status,
            "b_wake_at": self.wake_at,
            "b_now": self.now,
            "b_failed_step": self.failed_step,
        }
        if self.owner is not None:
            params["b_owner"] = self.owner
            params["b_lease_owner"] = self.owner if self.lease_until is not None else None
            params["b_lease_until"] = self.lease_until
        return params


def refusal(row: Sequence[Any] | None, saga_id: str, expected_seq: int) -> SagaError:
    """Why an append was refused, from the saga's ``REFUSED`` row (``None``: no such saga)."""
    if row is None:
        return SagaNotFound(f"no saga has id {saga_id!r}")
    last_seq, lease_owner, lease_expires_at = row
    if last_seq != expected_seq:
        return ConcurrencyError(
            f"saga {saga_id}: expected to append after seq {expected_seq}, "
            f"but the log is at {last_seq}"
        )
    return LeaseHeld(
        f"saga {saga_id} is leased to {lease_owner} until {from_ts(lease_expires_at).isoformat()}"
    )

"""``saga demo``: a travel booking on the embedded SQLite log, with faults injected.

Two trips are booked. The first meets a flaky flight service (two transient
errors, retried with exponential backoff) and a hotel whose first attempt
hangs past its timeout; it completes. The second has its card declined (a
permanent error): the hotel and the flight are undone, newest first.

The card number is a secret field: the log holds it encrypted under the
store's key, the steps get the real number, and timelines show ``**********``.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

from pydantic import BaseModel, SecretStr

from saga.coordinator import Coordinator
from saga.definition import Saga, StepContext
from saga.errors import PermanentError
from saga.inspection.timeline import show
from saga.policies import Retry
from saga.store import EventStore

__all__ = ["TripRequest", "build", "main"]


class TripRequest(BaseModel):
    """What a traveller asks for."""

    traveller: str
    city: str
    nights: int
    card: SecretStr
    """Never written in clear: the store needs an encryption key (``saga demo`` makes one if none
    is set)."""


class _Faults:
    """Deterministic fault injection for the demo's fake services."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def flaky(self, key: str, failures: int, error: Exception) -> None:
        """Raise ``error`` on the first ``failures`` calls for ``key``."""
        self.calls[key] += 1
        if self.calls[key] <= failures:
            raise error

    def slow_once(self, key: str, seconds: float) -> None:
        """Hang for ``seconds`` on the first call for ``key``."""
        self.calls[key] += 1
        if self.calls[key] == 1:
            time.sleep(seconds)


def build(faults: _Faults | None = None) -> Saga:
    """The demo's travel-booking saga (faults injected into its fake services)."""
    f = faults or _Faults()
    trip = Saga("book-trip", version=1, input_model=TripRequest, deadline=30.0)

    @trip.step(retry=Retry.exponential(initial=0.05, maximum=0.5, attempts=4, jitter=True), timeout=2.0)
    def reserve_flight(ctx: StepContext) -> dict[str, Any]:
        f.flaky(ctx.idempotency_key, 2, ConnectionError("flights service: 503 Service Unavailable"))
        return {"flight": "SK4711", "to": ctx.input.city, "ref": f"F-{ctx.saga_id[-6:]}"}

    @reserve_flight.compensate(retry=Retry.fixed(0.05, attempts=5))
    def cancel_flight(ctx: StepContext) -> None:
        """Cancel the reservation (the flights service ignores unknown references)."""

    @trip.step(retry=Retry.fixed(0.05, attempts=3), timeout=0.3)
    def book_hotel(ctx: StepContext) -> dict[str, Any]:
        f.slow_once(ctx.idempotency_key, 1.0)
        return {"hotel": "Grand", "nights": ctx.input.nights, "ref": f"H-{ctx.saga_id[-6:]}"}

    @book_hotel.compensate(retry=Retry.fixed(0.05, attempts=5))
    def cancel_hotel(ctx: StepContext) -> None:
        """Release the room."""

    @trip.step(retry=Retry.exponential(initial=0.05, maximum=0.5, attempts=3))
    def charge_card(ctx: StepContext) -> dict[str, Any]:
        if ctx.input.card.get_secret_value().endswith("0000"):
            raise PermanentError("card declined by issuer")
        total = 180 * ctx.input.nights + 420
        return {"charged": total, "currency": "EUR"}

    return trip


def main(store: EventStore, *, out: Any = print) -> list[str]:
    """Run both trips on ``store``, print their timelines, and return their ids.

    ``store`` needs an encryption key (:class:`~saga.secrets.keys.EncryptionKeyMissing` otherwise,
    before anything is written): the card numbers are secret.
    """
    trip = build()
    run = uuid.uuid4().hex[:6]
    ids = []
    with Coordinator(store, sagas=[trip], lease=30.0) as coordinator:
        for who, card in (("ada", "4242424242424242"), ("grace", "4000000000000000")):
            saga_id = f"trip-{who}-{run}"
            request = {"traveller": who, "city": "Oslo", "nights": 3, "card": card}
            coordinator.start("book-trip", request, saga_id=saga_id)
            view = coordinator.run(saga_id)
            out("\n".join(show(store, saga_id)))
            out(f"  => {view.status.value}\n")
            ids.append(saga_id)
    return ids

"""Travel booking over HTTP: flight, hotel (with a standby) and car services on loopback.

    python -m examples.travel

The example starts the services itself. The hotel's primary is down, so its
standby takes the booking (``Failover``); a car that cannot be had rolls back
the hotel and the flight.
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from saga import Coordinator, EventStore, Retry, Saga, StepContext
from saga.adapters import Failover, Http

from .services import Answer, Request, Service

SOLD_OUT = {"Reykjavik"}


class Trip(BaseModel):
    city: str
    nights: int = 1


# -- the services (stand-ins for the airline's, the hotel's and the car hire's) -------------


def _bookings(prefix: str) -> Any:
    """A handler that books on POST and cancels on DELETE (cancelling nothing is fine)."""
    counter = itertools.count(1)
    booked: set[str] = set()

    def handle(request: Request) -> Answer:
        if request.method == "POST":
            ref = f"{prefix}-{next(counter)}"
            booked.add(ref)
            return Answer(201, {"ref": ref, **(request.body or {})})
        booked.discard(request.path.rsplit("/", 1)[-1])
        return Answer(204)

    return handle


def _down(request: Request) -> Answer:
    return Answer(503, {"error": "down for maintenance"})


def _cars(request: Request) -> Answer:
    city = (request.body or {}).get("city")
    if city in SOLD_OUT:
        return Answer(409, {"error": f"no cars left in {city}"})
    return Answer(201, {"ref": f"C-{city}", "city": city})


@dataclass
class Services:
    flight: Service
    hotel: Service
    hotel_standby: Service
    car: Service

    def all(self) -> list[Service]:
        return [self.flight, self.hotel, self.hotel_standby, self.car]

    def close(self) -> None:
        for s in self.all():
            s.close()


def start_services() -> Services:
    """The four services, each on a port of its own; the hotel's primary is down."""
    hotel = _bookings("H")  # primary and standby share the hotel's bookings
    return Services(
        flight=Service("flight", _bookings("F")),
        hotel=Service("hotel", _down),
        hotel_standby=Service("hotel-standby", hotel),
        car=Service("car", _cars),
    )


# -- the saga -------------------------------------------------------------------------------


def travel_saga(services: Services) -> Saga:
    """Book a flight, a hotel (primary, else standby) and a car; undo in reverse."""
    flight, car = services.flight.url, services.car.url
    hotels = [services.hotel.url, services.hotel_standby.url]
    quick = Retry.fixed(0.05, attempts=3)

    trip = Saga("travel", input_model=Trip)
    trip.call(
        "book_flight", Http("POST", f"{flight}/bookings"),
        request=lambda ctx: {"json": {"to": ctx.input.city}},
        compensate=Http("DELETE", f"{flight}/bookings/{{ref}}"),
        compensate_request=_booked_ref, retry=quick, compensate_retry=quick, timeout=10,
    )
    trip.call(
        "book_hotel", Failover([Http("POST", f"{h}/bookings") for h in hotels]),
        request=lambda ctx: {"json": {"city": ctx.input.city, "nights": ctx.input.nights}},
        compensate=Failover([Http("DELETE", f"{h}/bookings/{{ref}}") for h in hotels]),
        compensate_request=_booked_ref, retry=quick, compensate_retry=quick, timeout=10,
    )
    trip.call(  # a 409 is final: no retry, and the steps before are undone
        "rent_car", Http("POST", f"{car}/rentals"),
        request=lambda ctx: {"json": {"city": ctx.input.city}},
        retry=quick, timeout=10,
    )
    return trip


def _booked_ref(ctx: StepContext) -> dict[str, Any]:
    """Cancel the booking the step made: its answer names it."""
    return {"path": {"ref": ctx.result["ref"]}}


def main(store_url: str | None = None) -> dict[str, Any]:
    """Book a trip to Oslo (it completes) and one to Reykjavik (no car: rolled back)."""
    services = start_services()
    with tempfile.TemporaryDirectory() as tmp:
        url = store_url or f"sqlite:///{Path(tmp) / 'travel.db'}"
        try:
            with EventStore(url) as store, Coordinator(store, [travel_saga(services)]) as coordinator:
                oslo = coordinator.execute("travel", {"city": "Oslo", "nights": 2}, saga_id="trip-oslo")
                reykjavik = coordinator.execute("travel", {"city": "Reykjavik"}, saga_id="trip-reykjavik")
        finally:
            services.close()
    for view in (oslo, reykjavik):
        print(f"{view.saga_id}: {view.status.value}" + (f" ({view.reason})" if view.reason else ""))
    for s in services.all():
        print(f"  {s.name}: {', '.join(s.log) or 'no requests'}")
    return {
        "oslo": oslo,
        "reykjavik": reykjavik,
        "logs": {s.name: list(s.log) for s in services.all()},
    }


if __name__ == "__main__":
    main()

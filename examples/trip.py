"""A trip booking: the README's example, runnable with ``saga worker examples.trip``.

    saga start examples.trip book-trip --input '{"city": "Oslo", "nights": 2}' --id order-42
    saga worker examples.trip --until-idle
    saga show order-42
"""

from __future__ import annotations

from pydantic import BaseModel

from saga import PermanentError, Retry, Saga, StepContext


class Trip(BaseModel):
    city: str
    nights: int = 1


class Flight(BaseModel):
    flight: str
    ref: str


trip = Saga("book-trip", version=1, input_model=Trip, deadline=600)


@trip.step(retry=Retry.exponential(initial=0.1, maximum=5.0, multiplier=2.0, attempts=5, jitter=True),
           timeout=10.0)
def reserve_flight(ctx: StepContext) -> Flight:
    # A real step calls the airline with ctx.idempotency_key, so a retry never books twice.
    return Flight(flight="SK4711", ref=f"F-{ctx.idempotency_key}")


@reserve_flight.compensate(retry=Retry.fixed(0.5, attempts=None))
def cancel_flight(ctx: StepContext) -> None:
    flight: Flight = ctx.result  # this step's own output, as its model
    print(f"cancelling {flight.ref}")


@trip.step(retry=Retry.fixed(1.0, attempts=3), timeout=5.0)
def book_hotel(ctx: StepContext) -> dict[str, object]:
    if ctx.input.nights > 14:
        raise PermanentError("no hotel takes bookings longer than two weeks")
    return {"hotel": "Grand", "city": ctx.input.city, "nights": ctx.input.nights}

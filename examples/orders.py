"""Order fulfilment: a hedged inventory lookup and a payment service behind a circuit breaker.

    python -m examples.orders

The inventory runs two replicas; the primary is slow today, so after 50 ms
the lookup also asks the replica, takes its answer and hangs up on the
primary (``Hedge``). The payment service fails its first three requests: the
breaker opens after two, refuses the calls that come while it is open
without bothering the service, lets one trial through after its pause, and
closes when a trial succeeds (``CircuitBreaker``).
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from saga import Coordinator, EventStore, PermanentError, Retry, Saga, StepContext
from saga.adapters import CircuitBreaker, Hedge, Http

from .services import Answer, Request, Service


class Order(BaseModel):
    item: str
    quantity: int = 1


def _stock(delay: float) -> Any:
    def handle(request: Request) -> Answer:
        return Answer(200, {"item": request.path.rsplit("/", 1)[-1], "in_stock": 12}, delay=delay)

    return handle


def _flaky_payments(failures: int) -> Any:
    lock = threading.Lock()
    seen = 0

    def handle(request: Request) -> Answer:
        nonlocal seen
        with lock:
            seen += 1
            failing = seen <= failures
        if failing:
            return Answer(503, {"error": "payment processor unavailable"})
        if request.method == "DELETE":
            return Answer(204)
        return Answer(201, {"charge": f"P-{seen}", **(request.body or {})})

    return handle


def _shipping(request: Request) -> Answer:
    return Answer(201, {"parcel": "S-1", **(request.body or {})})


@dataclass
class Services:
    inventory: Service
    inventory_replica: Service
    payments: Service
    shipping: Service

    def all(self) -> list[Service]:
        return [self.inventory, self.inventory_replica, self.payments, self.shipping]

    def close(self) -> None:
        for s in self.all():
            s.close()


def start_services() -> Services:
    """The inventory's slow primary and quick replica, a flaky payments service, shipping."""
    return Services(
        inventory=Service("inventory", _stock(delay=2.0)),
        inventory_replica=Service("inventory-replica", _stock(delay=0.0)),
        payments=Service("payments", _flaky_payments(failures=3)),
        shipping=Service("shipping", _shipping),
    )


def order_saga(services: Services, *, reset_after: float = 0.5) -> tuple[Saga, CircuitBreaker]:
    """Check stock (hedged), charge (behind a breaker), ship; a failed shipment refunds."""
    stock_at = Hedge(
        [Http("GET", f"{s.url}/stock/{{item}}") for s in (services.inventory, services.inventory_replica)],
        after=0.05,
    )
    payments = CircuitBreaker(Http("POST", f"{services.payments.url}/charges"), failures=2,
                              reset_after=reset_after)
    refunds = Http("DELETE", f"{services.payments.url}/charges/{{charge}}")
    ship_at = Http("POST", f"{services.shipping.url}/parcels")

    order = Saga("order", input_model=Order)

    @order.step(retry=Retry.fixed(0.05, attempts=3))
    def check_stock(ctx: StepContext) -> Any:
        stock = stock_at(ctx, path={"item": ctx.input.item})
        if stock["in_stock"] < ctx.input.quantity:
            raise PermanentError(f"only {stock['in_stock']} {ctx.input.item} left")
        return stock

    @order.step(retry=Retry.fixed(0.1, attempts=30))
    def charge(ctx: StepContext) -> Any:
        return payments(ctx, json={"item": ctx.input.item, "quantity": ctx.input.quantity})

    @charge.compensate
    def refund(ctx: StepContext) -> None:
        refunds(ctx, path={"charge": ctx.result["charge"]})

    @order.step(retry=Retry.fixed(0.05, attempts=3))
    def ship(ctx: StepContext) -> Any:
        return ship_at(ctx, json={"item": ctx.input.item})

    return order, payments


def main(store_url: str | None = None) -> dict[str, Any]:
    """Fulfil one order and show what the hedge and the breaker did."""
    services = start_services()
    with tempfile.TemporaryDirectory() as tmp:
        url = store_url or f"sqlite:///{Path(tmp) / 'orders.db'}"
        saga, breaker = order_saga(services)
        try:
            with EventStore(url) as store, Coordinator(store, [saga]) as coordinator:
                view = coordinator.execute("order", {"item": "kettle", "quantity": 2}, saga_id="order-1")
        finally:
            services.close()
    charged = view.steps["charge"].attempts
    print(f"order-1: {view.status.value}; stock from {view.results['check_stock']}")
    print(f"  charge: {charged} attempts, {len(services.payments.log)} reached the payment service, "
          f"the breaker is {breaker.state.value}")
    for s in services.all():
        print(f"  {s.name}: {', '.join(s.log) or 'no requests'}")
    return {
        "view": view,
        "charge_attempts": charged,
        "logs": {s.name: list(s.log) for s in services.all()},
        "breaker": breaker.state.value,
    }


if __name__ == "__main__":
    main()

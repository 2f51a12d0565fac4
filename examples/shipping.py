"""A shipment for the guide's "Operating sagas" (docs/operating.md): reserve stock, charge the card, ship.

    saga start examples.shipping shipment --input '{"sku": "kettle", "card": "flaky"}' --id ship-1
    saga worker examples.shipping --until-idle
    saga show ship-1

The input's ``card`` picks how the bank answers: ``ok``; ``flaky`` (the bank
is unreachable, retried every hour: the saga is stuck waiting); ``declined``
(a permanent failure: the saga compensates). A ``sku`` of ``"recalled"``
makes the warehouse refuse to release the stock, so a compensation gives up
and the saga ends ``failed``.
"""

from __future__ import annotations

from pydantic import BaseModel

from saga import PermanentError, Retry, Saga, StepContext


class Order(BaseModel):
    sku: str
    card: str = "ok"


shipment = Saga("shipment", version=1, input_model=Order)


@shipment.step(retry=Retry.none())
def reserve(ctx: StepContext) -> dict[str, str]:
    return {"hold": f"H-{ctx.input.sku}"}


@reserve.compensate(retry=Retry.none())
def release(ctx: StepContext) -> None:
    if ctx.input.sku == "recalled":
        raise RuntimeError("warehouse refuses to release a recalled item")


@shipment.step(retry=Retry.fixed(3600.0, attempts=48))
def charge(ctx: StepContext) -> dict[str, str]:
    if ctx.input.card == "flaky":
        raise ConnectionError("bank unreachable")
    if ctx.input.card == "declined":
        raise PermanentError("card declined")
    return {"payment": f"P-{ctx.input.sku}"}


@charge.compensate(retry=Retry.none())
def refund(ctx: StepContext) -> None:
    print(f"refunding {ctx.result['payment']}")


@shipment.step(retry=Retry.none())
def ship(ctx: StepContext) -> dict[str, str]:
    return {"parcel": f"{ctx.results['reserve']['hold']}/{ctx.results['charge']['payment']}"}

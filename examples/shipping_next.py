"""Two ways to deploy a renamed step of ``examples.shipping``, for ``saga check``.

``careless`` renames ``charge`` to ``bill`` under the same version: a saga in
flight that reached ``charge`` could not continue. ``careful`` adds version 2
beside version 1, which stays registered until its sagas drain.
"""

from __future__ import annotations

from saga import Retry, Saga, StepContext

from .shipping import Order, shipment


def _renamed(version: int) -> Saga:
    saga = Saga("shipment", version=version, input_model=Order)

    @saga.step(retry=Retry.none())
    def reserve(ctx: StepContext) -> dict[str, str]:
        return {"hold": f"H-{ctx.input.sku}"}

    @reserve.compensate(retry=Retry.none())
    def release(ctx: StepContext) -> None:
        pass

    @saga.step(retry=Retry.fixed(3600.0, attempts=48))
    def bill(ctx: StepContext) -> dict[str, str]:
        return {"payment": f"P-{ctx.input.sku}"}

    @bill.compensate(retry=Retry.none())
    def refund(ctx: StepContext) -> None:
        pass

    @saga.step(retry=Retry.none())
    def ship(ctx: StepContext) -> dict[str, str]:
        return {"parcel": f"{ctx.results['reserve']['hold']}/{ctx.results['bill']['payment']}"}

    return saga


careless = _renamed(1)
careful = [shipment, _renamed(2)]

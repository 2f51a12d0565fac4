"""The examples run, end to end, against their own loopback services and databases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from examples import orders, transfer, travel
from saga import SagaStatus

ROOT = Path(__file__).resolve().parent.parent


def test_travel_fails_over_to_the_standby_hotel_and_a_declined_car_rolls_back() -> None:
    out = travel.main()
    oslo, reykjavik = out["oslo"], out["reykjavik"]
    assert oslo.status is SagaStatus.COMPLETED
    assert oslo.results["book_hotel"]["ref"].startswith("H-")
    assert reykjavik.status is SagaStatus.COMPENSATED
    assert "409" in (reykjavik.reason or "") and "no cars left" in (reykjavik.reason or "")
    logs = out["logs"]
    # Every hotel booking hit the primary first, then the standby.
    assert logs["hotel"][:2] == ["POST /bookings -> 503", "POST /bookings -> 503"]
    assert logs["hotel-standby"][:2] == ["POST /bookings -> 201", "POST /bookings -> 201"]
    # The Reykjavik trip's hotel and flight were cancelled, the Oslo trip's were not.
    hotel_ref = reykjavik.results["book_hotel"]["ref"]
    flight_ref = reykjavik.results["book_flight"]["ref"]
    assert logs["hotel-standby"][2:] == [f"DELETE /bookings/{hotel_ref} -> 204"]
    assert logs["flight"][2:] == [f"DELETE /bookings/{flight_ref} -> 204"]
    assert logs["car"] == ["POST /rentals -> 201", "POST /rentals -> 409"]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_transfer_moves_the_money_once_despite_a_lost_reply(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue("postgres_url")) if backend == "postgres" else None
    out = transfer.main(store_url=url, bank_url=url)
    ok, too_much = out["ok"], out["too_much"]
    assert ok.status is SagaStatus.COMPLETED
    assert ok.steps["debit"].attempts == 2  # the first reply was lost
    assert ok.results["debit"] == {"account": "alice", "balance": 70}
    assert too_much.status is SagaStatus.COMPENSATED and "ParticipantRejected" in (too_much.reason or "")
    assert out["balances"] == {"alice": 70, "bob": 30}


def test_orders_hedge_the_inventory_and_break_the_payment_circuit() -> None:
    out = orders.main()
    assert out["view"].status is SagaStatus.COMPLETED
    logs = out["logs"]
    assert logs["inventory"] == ["GET /stock/kettle -> client went away"]
    assert logs["inventory-replica"] == ["GET /stock/kettle -> 200"]
    assert logs["payments"] == ["POST /charges -> 503"] * 3 + ["POST /charges -> 201"]
    # The open breaker turned attempts away without calling the payment service.
    assert out["charge_attempts"] > len(logs["payments"])
    assert out["breaker"] == "closed"


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("examples.travel", "trip-reykjavik: compensated"),
        ("examples.transfer", "balances: {'alice': 70, 'bob': 30}"),
        ("examples.orders", "order-1: completed"),
    ],
)
def test_each_example_runs_as_a_program(module: str, expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout

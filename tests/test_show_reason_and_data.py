"""What ``saga show`` (text and ``--json``) and the web page say about a saga as it is now: the reason
folded from the whole log (a retry clears a compensation's "gave up"), the input and the results."""

from __future__ import annotations

import json
from urllib.parse import quote

from pydantic import BaseModel, SecretStr

from saga import Coordinator, EventStore, Retry, Saga, StepContext
from saga.secrets.keys import KeyRing, dump_secret_json, generate_key
from tests.cli_run import ok
from tests.ui_log import HTTP, free_port, serving

MASK = "**********"
CARD = "4111-1111-1111-1111"


def _hotel(messages: list[str]) -> Saga:
    """Book (succeeds), then pay (fails for good); unbooking fails with each of ``messages`` in turn,
    then succeeds."""
    saga = Saga("hotel")

    @saga.step
    def book(ctx: StepContext) -> str:
        return "room 12"

    @book.compensate(retry=Retry.none())
    def unbook(ctx: StepContext) -> None:
        if messages:
            raise RuntimeError(messages.pop(0))

    @saga.step(retry=Retry.none())
    def pay(ctx: StepContext) -> str:
        raise ValueError("card declined")

    return saga


def _reasons(url: str, saga_id: str) -> tuple[str, str | None, str]:
    """The reason as ``saga show --json``, ``saga show`` and the web page give it."""
    data = json.loads(ok("--db", url, "show", saga_id, "--json"))
    lines = [line for line in ok("--db", url, "show", saga_id).splitlines() if line.startswith("  reason: ")]
    with serving(url, free_port()) as base:
        page = HTTP.get(f"{base}/api/sagas/{quote(saga_id, safe='')}", timeout=30).json()
    assert page["reason"] == data["reason"]
    return str(data["reason"]), lines[0][len("  reason: "):] if lines else None, data["status"]


def test_the_reason_is_the_one_the_log_gives_now_after_a_retry(sql_url: str) -> None:
    messages = ["hotel API down", "hotel API still down"]
    with EventStore(sql_url) as store, Coordinator(store, sagas=[_hotel(messages)]) as c:
        c.execute("hotel", None, saga_id="h1")
    reason, line, status = _reasons(sql_url, "h1")
    assert status == "failed"
    assert reason == line and reason.startswith("compensation of book gave up: RuntimeError: hotel API down")

    ok("--db", sql_url, "retry", "h1", "--reason", "API is back")
    reason, line, status = _reasons(sql_url, "h1")
    assert status == "compensating"
    # the compensation is reopened: the saga compensates for the reason it began to
    assert reason == line and reason.startswith("step pay failed: ValueError: card declined")

    with EventStore(sql_url) as store, Coordinator(store, sagas=[_hotel(messages)]) as c:
        c.run("h1")
    reason, line, status = _reasons(sql_url, "h1")
    assert status == "failed"
    assert reason == line and reason.startswith(
        "compensation of book gave up: RuntimeError: hotel API still down")

    ok("--db", sql_url, "retry", "h1")
    with EventStore(sql_url) as store, Coordinator(store, sagas=[_hotel([])]) as c:
        c.run("h1")
    reason, line, status = _reasons(sql_url, "h1")
    assert status == "compensated"
    assert reason == line and reason.startswith("step pay failed: ValueError: card declined")


class Card(BaseModel):
    holder: str
    number: SecretStr


def _wallet(ring: KeyRing) -> Saga:
    saga = Saga("wallet", input_model=Card)

    @saga.step(retry=Retry.fixed(0.01, attempts=2))
    def save(ctx: StepContext) -> object:
        if ctx.attempt == 1:
            raise ConnectionError("vault busy")
        card = Card(holder="Ada", number=SecretStr(CARD))
        return dump_secret_json(Card, card, keys=ring, context=f"{ctx.saga_id}/save")

    @saga.step
    def label(ctx: StepContext) -> dict[str, str]:
        return {"label": "Ada's card"}

    return saga


def test_show_json_has_the_input_and_each_succeeded_attempts_result_with_secrets_masked(
    sql_url: str,
) -> None:
    key = generate_key()
    with EventStore(sql_url, encryption_key=key) as store, \
            Coordinator(store, sagas=[_wallet(KeyRing([key]))]) as c:
        c.execute("wallet", {"holder": "Ada", "number": CARD}, saga_id="w1")
    out = ok("--db", sql_url, "show", "w1", "--json")
    assert CARD not in out
    data = json.loads(out)
    assert data["input"] == {"holder": "Ada", "number": MASK}
    assert [(a["step"], a["outcome"], a["result"]) for a in data["attempts"]] == [
        ("save", "failed", None),
        ("save", "succeeded", {"holder": "Ada", "number": MASK}),
        ("label", "succeeded", {"label": "Ada's card"}),
    ]
    text = ok("--db", sql_url, "show", "w1")
    assert CARD not in text and MASK in text

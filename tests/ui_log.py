"""A log made by real sagas for the web pages' tests: retries, a timeout, compensations, an operator's
cancel, a saga still waiting to retry, a secret in a result, and ids and messages holding markup."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from pydantic import BaseModel, SecretStr

from saga import Coordinator, EventStore, PermanentError, Retry, Saga, StepContext, VirtualClock
from saga.secrets.keys import KeyRing, dump_secret_json, generate_key

EVIL_ID = '<script>window.pwned = "id"</script>'
EVIL_MESSAGE = '<script>window.pwned = "message"</script><img src=x onerror="window.pwned=1">'
SECRET = "4111-1111-1111-1111"

HTTP = httpx.Client(timeout=30)
"""The client of the tests' requests to the pages: ``httpx.get`` makes a client, and loads the
certificate authorities again, for each request (some 40 ms, more than most pages take)."""


class Card(BaseModel):
    """A payment card whose number is secret."""

    holder: str
    number: SecretStr


def trip(clock: VirtualClock | None = None) -> Saga:
    """Book, charge (fails once, times out once), ship (fails as its input says); each compensated.

    With ``clock``, each step takes a little of its time, so the attempts have lengths to draw.
    """
    saga = Saga("trip")

    def take(seconds: float) -> None:
        if clock is not None:
            clock.advance(seconds)

    @saga.step(retry=Retry.fixed(1.0, attempts=3))
    def book(ctx: StepContext) -> str:
        take(0.6)
        return "booked"

    @book.compensate(retry=Retry.fixed(5.0, attempts=3))
    def unbook(ctx: StepContext) -> None:
        take(0.4)
        if ctx.attempt == 1:
            raise RuntimeError("hotel API down")

    @saga.step(retry=Retry.fixed(2.0, attempts=4), timeout=0.1)
    async def charge(ctx: StepContext) -> str:
        take(0.05)  # within its 0.1 s limit: a limit is judged on the coordinator's clock
        if ctx.attempt == 1:
            raise ConnectionError("bank busy")
        if ctx.attempt == 2:
            await asyncio.sleep(5)
        return "charged"

    @charge.compensate
    def refund(ctx: StepContext) -> None:
        take(0.5)

    @saga.step(retry=Retry.fixed(600.0, attempts=2))
    def ship(ctx: StepContext) -> str:
        take(0.8)
        if ctx.input == "no stock":
            raise PermanentError("nothing left to ship")
        if ctx.input == "evil":
            raise PermanentError(EVIL_MESSAGE)
        if ctx.input == "slow warehouse":
            raise TimeoutError("warehouse slow")
        return "shipped"

    return saga


def wallet(ring: KeyRing) -> Saga:
    """One step whose result holds a card number, stored encrypted as the coordinator stores secrets."""
    saga = Saga("wallet")

    @saga.step
    def save_card(ctx: StepContext) -> object:
        card = Card(holder="Ada", number=SecretStr(SECRET))
        return dump_secret_json(Card, card, keys=ring, context=f"{ctx.saga_id}/save_card")

    return saga


@dataclass(frozen=True)
class Log:
    """The ids of the sagas written, by what happened to them."""

    compensated: str = "trip-no-stock"
    evil: str = EVIL_ID
    completed: str = "trip-ok"
    cancelled: str = "trip-cancelled"
    waiting: str = "trip-waiting"
    secret: str = "wallet-1"


def write_log(url: str) -> Log:
    """Run the sagas of :class:`Log` against the database at ``url`` (created if missing)."""
    log = Log()
    clock = VirtualClock()
    with EventStore(url) as store:
        sagas = [trip(clock), wallet(KeyRing([generate_key()]))]
        c = Coordinator(store, sagas, clock=clock, poll_interval=60.0)
        for saga_id, value in ((log.compensated, "no stock"), (log.evil, "evil"), (log.completed, "fine")):
            c.start("trip", value, saga_id=saga_id)
            c.run(saga_id)
            clock.advance(30.0)
        c.start("wallet", None, saga_id=log.secret)
        c.run(log.secret)
        c.start("trip", "slow warehouse", saga_id=log.cancelled)
        _until_ship_waits(c, clock, store, log.cancelled)
        c.cancel(log.cancelled, reason="customer changed plans", by="dana")
        c.run(log.cancelled)
        clock.advance(30.0)
        c.start("trip", "slow warehouse", saga_id=log.waiting)
        _until_ship_waits(c, clock, store, log.waiting)
        c.close()
    return log


def _until_ship_waits(c: Coordinator, clock: VirtualClock, store: EventStore, saga_id: str) -> None:
    """Drive the saga over charge's retries until ship has failed once and waits ten minutes to retry."""
    for _ in range(10):
        c.work(until_idle=True)
        last = store.load(saga_id)[-1]
        if last.type == "StepAttemptFailed" and last.data["step"] == "ship":
            return
        clock.advance(3.0)
    raise AssertionError(f"{saga_id}: ship never failed")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(url: str, port: int) -> Iterator[str]:
    """The web pages over ``url`` served by uvicorn in a thread on ``127.0.0.1:port``; yields the base URL."""
    import uvicorn

    from saga.ui.app import allowed_hosts, create_app
    from saga.ui.data import open_store

    with open_store(url) as store:
        app = create_app(store, hosts=allowed_hosts("127.0.0.1", port))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the web server did not start")
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(10)

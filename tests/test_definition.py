"""Definitions validated when built, bad input refused without writing, what a step is told."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from saga import (
    Coordinator,
    DefinitionError,
    EventStore,
    InvalidInput,
    Retry,
    Saga,
    SagaError,
    SagaNotFound,
    SagaStatus,
    StepContext,
    UnknownSagaName,
    VirtualClock,
)
from saga._engine.reading import view as read_view
from tests.helpers import WorkerDied, loose, open_store, snapshot


class Order(BaseModel):
    city: str
    nights: int


class Booking(BaseModel):
    ref: str
    nights: int


def _noop(ctx: StepContext) -> None:
    return None


# -- definitions ----------------------------------------------------------------------------


def test_step_name_used_twice() -> None:
    saga = Saga("twice")
    saga.step(name="reserve")(_noop)
    with pytest.raises(DefinitionError, match="step name 'reserve' is used twice") as info:
        saga.step(name="reserve")(_noop)
    assert isinstance(info.value, SagaError)
    assert [s.name for s in saga.steps] == ["reserve"]


def test_step_name_used_twice_by_decorator() -> None:
    saga = Saga("twice")

    @saga.step
    def reserve(ctx: StepContext) -> None:
        return None

    with pytest.raises(DefinitionError, match="used twice"):
        saga.step(reserve.fn)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Saga(""), "saga name must be"),
        (lambda: Saga("has space"), "saga name must be"),
        (lambda: Saga(loose(3)), "saga name must be"),
        (lambda: Saga("v", version=0), "version must be a whole number >= 1"),
        (lambda: Saga("v", version=True), "version must be a whole number >= 1"),
        (lambda: Saga("m", input_model=loose(dict)), "input_model must be a pydantic model class"),
        (lambda: Saga("s").step(name="bad name")(_noop), "invalid step name"),
        (lambda: Saga("s").step(name="x")(loose(42)), "a step must be a function"),
    ],
)
def test_invalid_definitions(build: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        build()


def test_a_step_has_one_compensation() -> None:
    saga = Saga("comp")
    step = saga.step(name="s")(_noop)
    step.compensate(_noop)
    with pytest.raises(DefinitionError, match="already has a compensation"):
        step.compensate(_noop)


def test_coordinator_refuses_an_empty_saga_and_two_definitions_of_one_version(
    sqlite_store: EventStore,
) -> None:
    with pytest.raises(DefinitionError, match="has no steps"):
        Coordinator(sqlite_store, [Saga("empty")])
    a, b = Saga("dup"), Saga("dup")
    a.step(name="x")(_noop)
    b.step(name="x")(_noop)
    with pytest.raises(DefinitionError, match="registered twice"):
        Coordinator(sqlite_store, [a, b])


# -- bad input writes nothing ---------------------------------------------------------------


@pytest.fixture
def booking() -> Saga:
    saga = Saga("booking", input_model=Order)
    saga.step(name="reserve")(_noop)
    return saga


def test_bad_input_raises_and_writes_nothing(
    sqlite_url: str, sqlite_store: EventStore, clock: VirtualClock, booking: Saga
) -> None:
    plain = Saga("plain")
    plain.step(name="reserve")(_noop)
    coordinator = Coordinator(sqlite_store, [booking, plain], clock=clock)
    existing = coordinator.start("booking", {"city": "Oslo", "nights": 2}, saga_id="ok")
    before = snapshot(sqlite_url)
    assert before[0] and before[1]

    cases: list[tuple[type[SagaError], str, Any]] = [
        (UnknownSagaName, "unknown saga 'nope'", lambda: coordinator.start("nope", {})),
        (UnknownSagaName, "registered: booking, plain", lambda: coordinator.execute("nope", {})),
        (InvalidInput, "nights", lambda: coordinator.start("booking", {"city": "Oslo"})),
        (InvalidInput, "nights",
         lambda: coordinator.start("booking", {"city": "Oslo", "nights": "many"}, saga_id="x")),
        (InvalidInput, "not JSON", lambda: coordinator.start("plain", {"when": {1, 2}})),
        (InvalidInput, "not JSON", lambda: coordinator.start("plain", {1: "int key"})),
        (InvalidInput, "not JSON", lambda: coordinator.start("plain", float("nan"))),
        (InvalidInput, "not JSON", lambda: coordinator.execute("plain", object())),
        (InvalidInput, "saga id", lambda: coordinator.start("plain", {}, saga_id="")),
        (SagaNotFound, "no-such", lambda: coordinator.run("no-such")),
        (SagaNotFound, "no-such", lambda: coordinator.get("no-such")),
        (SagaNotFound, "no-such", lambda: coordinator.cancel("no-such")),
        (SagaNotFound, "no-such", lambda: coordinator.retry("no-such")),
        (SagaNotFound, "no-such", lambda: sqlite_store.load("no-such")),
        (SagaNotFound, "no-such", lambda: read_view(sqlite_store, "no-such")),
        (SagaNotFound, "no-such", lambda: sqlite_store.summary("no-such")),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message) as info:
            call()
        assert isinstance(info.value, SagaError)
        assert "\n" not in str(info.value), "an error message should be one line"
    assert snapshot(sqlite_url) == before
    assert coordinator.get(existing).status is SagaStatus.RUNNING


def test_input_given_as_a_model_is_stored_as_json(
    sqlite_store: EventStore, clock: VirtualClock, booking: Saga
) -> None:
    coordinator = Coordinator(sqlite_store, [booking], clock=clock)
    saga_id = coordinator.start("booking", Order(city="Oslo", nights=3))
    assert sqlite_store.load(saga_id)[0].data["input"] == {"city": "Oslo", "nights": 3}
    # The same input given as a dict is the same saga.
    assert coordinator.start("booking", {"city": "Oslo", "nights": 3}, saga_id=saga_id) == saga_id


# -- StepContext ----------------------------------------------------------------------------


def test_step_context_contents(sqlite_url: str, clock: VirtualClock) -> None:
    seen: list[StepContext] = []
    saga = Saga("ctx", input_model=Order, deadline=timedelta(hours=1))

    @saga.step(retry=Retry.fixed(1.0, attempts=3))
    def reserve(ctx: StepContext) -> Booking:
        seen.append(ctx)
        if ctx.attempt == 1:
            raise WorkerDied  # the worker dies mid-attempt; another one carries on
        if ctx.attempt == 2:
            raise ConnectionError("flaky")
        return Booking(ref=f"R-{ctx.input.city}", nights=ctx.input.nights)

    @reserve.compensate
    def unreserve(ctx: StepContext) -> None:
        seen.append(ctx)

    @saga.step(retry=Retry.none())
    def pay(ctx: StepContext) -> None:
        seen.append(ctx)
        raise ValueError("card declined")

    t0 = clock.now()
    with open_store(sqlite_url) as store:
        first = Coordinator(store, [saga], clock=clock, lease=5.0, poll_interval=60.0)
        saga_id = first.start("ctx", {"city": "Oslo", "nights": 2}, saga_id="order-1")
        with pytest.raises(WorkerDied):
            first.run(saga_id)
        first.close()
    clock.advance(6)
    with open_store(sqlite_url) as store:
        second = Coordinator(store, [saga], clock=clock, lease=5.0, poll_interval=60.0)
        view = second.run(saga_id)
    assert view.status is SagaStatus.COMPENSATED

    r1, r2, r3, p, comp = seen
    assert [c.step for c in seen] == ["reserve", "reserve", "reserve", "pay", "reserve"]
    assert [c.attempt for c in seen] == [1, 2, 3, 1, 1]
    assert all(c.saga_id == "order-1" and c.saga_name == "ctx" for c in seen)
    assert all(c.deadline == t0 + timedelta(hours=1) for c in seen)
    # Stable across attempts and across the restart; different for the compensation.
    assert r1.idempotency_key == r2.idempotency_key == r3.idempotency_key
    assert comp.idempotency_key != r1.idempotency_key
    assert p.idempotency_key not in (r1.idempotency_key, comp.idempotency_key)
    assert "order-1" in r1.idempotency_key
    # Input as the validated model.
    assert all(isinstance(c.input, Order) and c.input == Order(city="Oslo", nights=2) for c in seen)
    # Results of completed steps, typed by the step's return annotation.
    assert r1.results == {} and r3.results == {}
    assert p.results == {"reserve": Booking(ref="R-Oslo", nights=2)}
    # In the compensation: this step's own result.
    assert comp.compensating and comp.result == Booking(ref="R-Oslo", nights=2)
    assert not r3.compensating and r3.result is None
    assert view.steps["reserve"].compensation == "compensated"
    assert view.steps["reserve"].result == {"ref": "R-Oslo", "nights": 2}


def test_step_context_without_an_input_model(sqlite_store: EventStore, clock: VirtualClock) -> None:
    seen: list[StepContext] = []
    saga = Saga("plain-ctx")

    @saga.step
    def first(ctx: StepContext) -> list[int]:
        seen.append(ctx)
        return [1, 2]

    @saga.step
    def second(ctx: StepContext) -> None:
        seen.append(ctx)

    coordinator = Coordinator(sqlite_store, [saga], clock=clock)
    view = coordinator.run(coordinator.start("plain-ctx", {"a": [1, "x", None]}))
    assert view.status is SagaStatus.COMPLETED
    assert seen[0].input == {"a": [1, "x", None]} and seen[0].deadline is None
    assert seen[1].results == {"first": [1, 2]}
    assert view.results == {"first": [1, 2], "second": None}


def test_a_result_that_is_not_json_fails_the_step(sqlite_store: EventStore, clock: VirtualClock) -> None:
    saga = Saga("bad-result")

    @saga.step(retry=Retry.fixed(1.0, attempts=3))
    def returns_a_set(ctx: StepContext) -> object:
        return {1, 2}

    coordinator = Coordinator(sqlite_store, [saga], clock=clock)
    view = coordinator.run(coordinator.start("bad-result", None))
    assert view.status is SagaStatus.COMPENSATED
    step = view.steps["returns_a_set"]
    assert step.attempts == 1 and step.error is not None and step.error.type == "InvalidResult"

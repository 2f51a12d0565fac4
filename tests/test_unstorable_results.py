"""Values the log cannot store fail the attempt; they never kill the worker or lose the effect."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from saga import (
    Coordinator,
    EventStore,
    InvalidInput,
    Retry,
    Saga,
    SagaNotFound,
    SagaStatus,
    StepContext,
    VirtualClock,
)
from saga import events as ev


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


class _Thing:
    """Some object that is not JSON."""


# name, what the step returns, words the recorded message must hold
UNSTORABLE_RESULTS: list[tuple[str, Callable[[], Any], str]] = [
    ("lone-surrogate", lambda: {"files": ["report.txt", "caf\udce9.txt"]}, "not valid Unicode"),
    ("huge-int", lambda: {"n": 10**5000}, "digits"),
    ("deep", lambda: _deep(100_000), "nested more than"),
    ("nul", lambda: {"text": "a\x00b"}, "NUL"),
    ("datetime", lambda: {"at": datetime(2030, 1, 1, tzinfo=UTC)}, "datetime is not a JSON value"),
    ("set", lambda: {1, 2, 3}, "set is not a JSON value"),
    ("object", _Thing, "_Thing is not a JSON value"),
]


def _saga(result: Callable[[], Any], undone: list[str]) -> Saga:
    saga = Saga("unstorable")

    @saga.step(retry=Retry.fixed(1.0, attempts=3))
    def reserve(ctx: StepContext) -> Any:
        return result() if ctx.saga_id.startswith("bad") else {"ok": True}

    @reserve.compensate
    def release(ctx: StepContext) -> None:
        undone.append(ctx.saga_id)

    @saga.step
    def confirm(ctx: StepContext) -> str:
        return "confirmed"

    return saga


def _check_failed_in_doubt(store: EventStore, saga_id: str, words: str) -> None:
    failures = [e.event for e in store.load(saga_id) if e.type == "StepAttemptFailed"]
    assert len(failures) == 1, "the attempt is failed once, not retried"
    (failed,) = failures
    assert isinstance(failed, ev.StepAttemptFailed)
    assert failed.error_type == "InvalidResult" and words in failed.message
    assert failed.message.isprintable()
    assert not failed.retried and failed.lost  # the step ran: its effect is in doubt
    assert [e.type for e in store.load(saga_id)][-1] == "SagaCompensated"


@pytest.mark.parametrize(("name", "result", "words"), UNSTORABLE_RESULTS,
                         ids=[n for n, _, _ in UNSTORABLE_RESULTS])
def test_execute_fails_an_unstorable_result_in_doubt_and_compensates_it(
    store_url: str, name: str, result: Callable[[], Any], words: str
) -> None:
    undone: list[str] = []
    with EventStore(store_url) as store:
        coordinator = Coordinator(store, [_saga(result, undone)], clock=VirtualClock())
        view = coordinator.execute("unstorable", {}, saga_id="bad-1")
        assert view.status is SagaStatus.COMPENSATED
        assert view.steps["reserve"].in_doubt and view.steps["reserve"].attempts == 1
        assert undone == ["bad-1"]
        _check_failed_in_doubt(store, "bad-1", words)
        # The coordinator carries on with the next saga.
        assert coordinator.execute("unstorable", {}, saga_id="good-1").status is SagaStatus.COMPLETED


@pytest.mark.parametrize(("name", "result", "words"), UNSTORABLE_RESULTS[:4],
                         ids=[n for n, _, _ in UNSTORABLE_RESULTS[:4]])
def test_a_worker_lives_on_after_an_unstorable_result(
    store_url: str, name: str, result: Callable[[], Any], words: str
) -> None:
    undone: list[str] = []
    with EventStore(store_url) as store:
        coordinator = Coordinator(store, [_saga(result, undone)], clock=VirtualClock())
        coordinator.start("unstorable", {}, saga_id="bad-2")
        coordinator.start("unstorable", {}, saga_id="good-2")
        coordinator.work(until_idle=True)
        assert coordinator.get("bad-2").status is SagaStatus.COMPENSATED
        assert coordinator.get("good-2").status is SagaStatus.COMPLETED
        assert undone == ["bad-2"]
        _check_failed_in_doubt(store, "bad-2", words)


def test_an_error_message_the_log_cannot_store_is_recorded_escaped(store_url: str) -> None:
    saga = Saga("bad-message")

    @saga.step(retry=Retry.fixed(1.0, attempts=2))
    def open_file(ctx: StepContext) -> str:
        if ctx.attempt == 1:
            raise FileNotFoundError("no such file: caf\udce9.txt\x00")
        return "opened"

    with EventStore(store_url) as store:
        coordinator = Coordinator(store, [saga], clock=VirtualClock())
        coordinator.start("bad-message", {}, saga_id="m-1")
        coordinator.work(until_idle=True)
        view = coordinator.get("m-1")
        assert view.status is SagaStatus.RUNNING  # retrying in one (virtual) second
        error = view.steps["open_file"].error
        assert error is not None and error.type == "FileNotFoundError"
        assert error.message == "no such file: caf\\udce9.txt\\x00"
        assert coordinator.execute("bad-message", {}, saga_id="m-2").status is SagaStatus.COMPLETED
        assert coordinator.run("m-1").status is SagaStatus.COMPLETED


class _Guest(BaseModel):
    name: str


@pytest.mark.parametrize("model", [None, _Guest], ids=["plain", "model"])
def test_an_input_the_log_cannot_store_is_refused_and_nothing_is_written(
    sqlite_store: EventStore, model: type[BaseModel] | None
) -> None:
    saga = Saga("guest", input_model=model)
    saga.step(name="greet")(lambda ctx: None)
    coordinator = Coordinator(sqlite_store, [saga], clock=VirtualClock())
    with pytest.raises(InvalidInput, match="not valid Unicode"):
        coordinator.start("guest", {"name": "caf\udce9"}, saga_id="g-1")
    with pytest.raises(SagaNotFound):
        sqlite_store.load("g-1")


def test_a_cancel_reason_the_log_cannot_store_is_refused(sqlite_store: EventStore) -> None:
    saga = Saga("guest")
    saga.step(name="greet")(lambda ctx: None)
    coordinator = Coordinator(sqlite_store, [saga], clock=VirtualClock())
    saga_id = coordinator.start("guest", {}, saga_id="g-2")
    with pytest.raises(InvalidInput, match="reason cannot be stored"):
        coordinator.cancel(saga_id, reason="stop \udce9")
    assert [e.type for e in sqlite_store.load(saga_id)] == ["SagaStarted"]

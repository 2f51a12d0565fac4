"""The pytest plugin ``saga.testing``: its fixtures as a user's test suite sees them, and its helpers.

The ``pytester`` tests write a user's test file and run pytest on it, so they
go through the ``pytest11`` entry point exactly as an installed package does.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from saga import (
    EventStore,
    InvalidInput,
    PermanentError,
    Retry,
    Saga,
    SagaStatus,
    StepContext,
    VirtualClock,
)
from saga import events as ev
from saga.testing import (
    Fault,
    SagaDidNotRest,
    SagaTestClock,
    SagaTestCoordinator,
)
from saga.testing.plugin import PostgresDatabases

from .conftest import postgres_admin_url
from .helpers import check_log_invariants, logged, loose

pytest_plugins = ["pytester"]

HOUR = 3600.0


def _of_type(coordinator: SagaTestCoordinator, saga_id: str, cls: type[ev.Event]) -> list[Any]:
    return [e.event for e in coordinator.events(saga_id) if e.type == cls.type_name()]


# -- run_until_rest -------------------------------------------------------------------------------


def test_hours_of_retries_pass_in_milliseconds(
    saga_coordinator: SagaTestCoordinator, saga_clock: SagaTestClock
) -> None:
    calls: list[int] = []
    slow = Saga("slow-service")

    @slow.step(retry=Retry.fixed(HOUR, attempts=10))
    def reach(ctx: StepContext) -> int:
        calls.append(ctx.attempt)
        if ctx.attempt < 8:
            raise ConnectionError("service down")
        return ctx.attempt

    saga_coordinator.register(slow)
    began = saga_clock.now()
    saga_id = saga_coordinator.start("slow-service")
    real = time.perf_counter()
    view = saga_coordinator.run_until_rest(saga_id)
    elapsed = time.perf_counter() - real

    assert view.status is SagaStatus.COMPLETED and view.results == {"reach": 8}
    assert calls == list(range(1, 9))
    assert saga_clock.now() - began == timedelta(hours=7)
    assert elapsed < 2.0, f"seven virtual hours took {elapsed:.2f}s of real time"
    starts = _of_type(saga_coordinator, saga_id, ev.StepAttemptStarted)
    failures = _of_type(saga_coordinator, saga_id, ev.StepAttemptFailed)
    for failure, retry in zip(failures, starts[1:], strict=True):
        assert retry.at == failure.next_attempt_at == failure.at + timedelta(hours=1)
    check_log_invariants(logged(saga_coordinator.events(saga_id)), ["reach"])


def test_run_until_rest_stops_at_its_horizon(saga_coordinator: SagaTestCoordinator) -> None:
    forever = Saga("forever")

    @forever.step(retry=Retry.fixed(HOUR, attempts=None))
    def never(ctx: StepContext) -> None:
        raise ConnectionError("still down")

    saga_coordinator.register(forever)
    saga_id = saga_coordinator.start("forever", saga_id="stuck")
    with pytest.raises(SagaDidNotRest, match=r"saga stuck is still running after 1 day, 0:00:00"):
        saga_coordinator.run_until_rest(saga_id, within=timedelta(days=1))
    attempts = len(_of_type(saga_coordinator, saga_id, ev.StepAttemptStarted))
    assert 24 <= attempts <= 25
    with pytest.raises(InvalidInput, match="within must be positive"):
        saga_coordinator.run_until_rest(saga_id, within=0)


# -- fail -----------------------------------------------------------------------------------------


def _order(ran: list[str]) -> Saga:
    """A two-step saga whose functions (plain and async) log what ran into ``ran``."""
    order = Saga("order")

    @order.step(retry=Retry.fixed(60, attempts=4))
    def charge(ctx: StepContext) -> str:
        ran.append(f"charge #{ctx.attempt}")
        return "charged"

    @charge.compensate(retry=Retry.fixed(30, attempts=3))
    async def refund(ctx: StepContext) -> None:
        await asyncio.sleep(0)
        ran.append(f"refund #{ctx.attempt}")

    @order.step(retry=Retry.fixed(60, attempts=3))
    async def ship(ctx: StepContext) -> str:
        await asyncio.sleep(0)
        ran.append(f"ship #{ctx.attempt}")
        return "shipped"

    return order


def test_fail_injects_failures_then_runs_the_real_function(
    saga_coordinator: SagaTestCoordinator,
) -> None:
    ran: list[str] = []
    order = _order(ran)
    saga_coordinator.register(order)
    charge_fault = saga_coordinator.fail(order["charge"], times=2, error=ConnectionError("bank down"))
    ship_fault = saga_coordinator.fail("ship", times=1, error=TimeoutError)

    view = saga_coordinator.run_until_rest(saga_coordinator.start("order", saga_id="o1"))

    assert view.status is SagaStatus.COMPLETED
    assert ran == ["charge #3", "ship #2"]
    assert (charge_fault.fired, ship_fault.fired) == (2, 1)
    failures = _of_type(saga_coordinator, "o1", ev.StepAttemptFailed)
    assert [(f.step, f.error_type, f.message) for f in failures] == [
        ("charge", "ConnectionError", "bank down"),
        ("charge", "ConnectionError", "bank down"),
        ("ship", "TimeoutError", ""),
    ]
    assert all(f.retried and not f.timed_out for f in failures)


def test_fail_with_a_permanent_error_compensates_and_compensations_can_fail_too(
    saga_coordinator: SagaTestCoordinator,
) -> None:
    ran: list[str] = []
    order = _order(ran)
    saga_coordinator.register(order)
    saga_coordinator.fail("ship", error=PermanentError("address unknown"))
    saga_coordinator.fail("charge", times=2, compensation=True)

    view = saga_coordinator.run_until_rest(saga_coordinator.start("order", saga_id="o2"))

    assert view.status is SagaStatus.COMPENSATED
    assert ran == ["charge #1", "refund #3"]
    comp_failures = _of_type(saga_coordinator, "o2", ev.CompensationAttemptFailed)
    assert [(f.error_type, f.message) for f in comp_failures] == [
        ("saga.testing.injection.InjectedFailure", "failure injected into charge (compensation) (1 of 2)"),
        ("saga.testing.injection.InjectedFailure", "failure injected into charge (compensation) (2 of 2)"),
    ]
    saga_coordinator.assert_history("o2", [
        "SagaStarted",
        "StepAttemptStarted", "StepSucceeded",
        "StepAttemptStarted", "StepAttemptFailed", "StepFailed",
        "CompensationStarted",
        "CompensationAttemptStarted", "CompensationAttemptFailed",
        "CompensationAttemptStarted", "CompensationAttemptFailed",
        "CompensationAttemptStarted", "StepCompensated",
        "SagaCompensated",
    ])


def test_a_compensation_failing_every_time_leaves_the_saga_failed(
    saga_coordinator: SagaTestCoordinator,
) -> None:
    ran: list[str] = []
    order = _order(ran)
    saga_coordinator.register(order)
    refund = order["charge"].compensation
    assert refund is not None
    saga_coordinator.fail(refund, times=None, error=RuntimeError("refunds are closed"))
    saga_coordinator.fail("ship", times=None)

    view = saga_coordinator.run_until_rest(saga_coordinator.start("order", saga_id="o3"))

    assert view.status is SagaStatus.FAILED
    assert ran == ["charge #1"]
    assert view.steps["charge"].compensation_attempts == 3
    assert view.steps["ship"].attempts == 3


def test_faults_are_undone_when_the_coordinator_closes(saga_store: EventStore) -> None:
    ran: list[str] = []
    order = _order(ran)
    real = {name: order[name].fn for name in ("charge", "ship")}
    coordinator = SagaTestCoordinator(saga_store, [order])
    early = coordinator.fail("charge", times=None)
    coordinator.fail("ship", times=None)
    early.undo()
    early.undo()
    assert coordinator.run_until_rest(coordinator.start("order")).status is SagaStatus.COMPENSATED
    coordinator.close()
    assert {name: order[name].fn for name in real} == real

    # Another coordinator on the same definitions runs the real functions.
    ran.clear()
    with SagaTestCoordinator(saga_store, [order]) as again:
        with again.fail("charge", times=None) as fault:
            assert isinstance(fault, Fault)
        assert again.run_until_rest(again.start("order")).status is SagaStatus.COMPLETED
    assert ran == ["charge #1", "ship #1"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c, s: c.fail(s, times=0), "times must be a whole number >= 1 or None"),
        (lambda c, s: c.fail(s, times=True), "times must be a whole number >= 1 or None"),
        (lambda c, s: c.fail(s, error="boom"), "error must be an exception instance or class"),
        (lambda c, s: c.fail(s, error=UnicodeDecodeError), "cannot be built without arguments"),
        (lambda c, s: c.fail("nope"), "'nope' is not a step of a saga registered"),
        (lambda c, s: c.fail(s, compensation=True), "step 'ship' of saga 'order' has no compensation"),
        (lambda c, s: c.hang(s), "ship has no timeout"),
    ],
)
def test_bad_fault_requests_are_refused(
    saga_coordinator: SagaTestCoordinator, call: Any, message: str
) -> None:
    order = _order([])
    saga_coordinator.register(order)
    with pytest.raises(InvalidInput, match=message):
        call(saga_coordinator, order["ship"])
    unregistered = Saga("other")
    unregistered.step(name="elsewhere")(lambda ctx: None)
    with pytest.raises(InvalidInput, match="'elsewhere' is not a step"):
        saga_coordinator.fail(unregistered["elsewhere"])


def test_a_test_coordinator_needs_a_test_clock(saga_store: EventStore) -> None:
    with pytest.raises(InvalidInput, match=r"clock must be a saga\.testing\.SagaTestClock"):
        SagaTestCoordinator(saga_store, clock=loose(VirtualClock()))


# -- timeouts on the virtual clock ----------------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True])
def test_hang_times_out_at_the_limit_and_the_step_is_compensated(
    saga_coordinator: SagaTestCoordinator, saga_clock: SagaTestClock, is_async: bool
) -> None:
    undone: list[str] = []
    booking = Saga("booking")

    def book(ctx: StepContext) -> str:
        return "booked"

    async def book_async(ctx: StepContext) -> str:
        return "booked"

    hotel = booking.step(name="hotel", retry=Retry.fixed(5, attempts=2), timeout=HOUR)(
        book_async if is_async else book
    )

    @hotel.compensate
    def cancel(ctx: StepContext) -> None:
        undone.append(ctx.step)

    saga_coordinator.register(booking)
    saga_coordinator.hang(hotel, times=2)
    began = saga_clock.now()
    real = time.perf_counter()
    view = saga_coordinator.run_until_rest(saga_coordinator.start("booking", saga_id="b"))

    assert time.perf_counter() - real < 2.0
    assert view.status is SagaStatus.COMPENSATED and undone == ["hotel"]
    assert view.steps["hotel"].in_doubt
    starts = _of_type(saga_coordinator, "b", ev.StepAttemptStarted)
    failures = _of_type(saga_coordinator, "b", ev.StepAttemptFailed)
    assert [f.timed_out for f in failures] == [True, True]
    assert [f.at for f in failures] == [s.timeout_at for s in starts]
    assert failures[0].at == began + timedelta(hours=1)
    assert "attempt 1 of hotel was still running at its time limit" in failures[0].message


def test_hang_on_a_step_without_a_timeout_ends_at_the_saga_deadline(
    saga_coordinator: SagaTestCoordinator, saga_clock: SagaTestClock
) -> None:
    undone: list[str] = []
    transfer = Saga("transfer", deadline=2 * HOUR)

    @transfer.step(retry=Retry.fixed(60, attempts=5))
    def debit(ctx: StepContext) -> str:
        return "debited"

    @debit.compensate
    def credit_back(ctx: StepContext) -> None:
        undone.append(ctx.step)

    saga_coordinator.register(transfer)
    saga_coordinator.hang("debit")
    began = saga_clock.now()
    view = saga_coordinator.run_until_rest(saga_coordinator.start("transfer", saga_id="t"))

    assert view.status is SagaStatus.COMPENSATED and undone == ["debit"]
    [failure] = _of_type(saga_coordinator, "t", ev.StepAttemptFailed)
    assert failure.timed_out and failure.at == began + timedelta(hours=2)
    assert failure.gave_up == "the saga deadline passed"


def test_hang_works_on_a_compensation_with_a_timeout(
    saga_coordinator: SagaTestCoordinator, saga_clock: SagaTestClock
) -> None:
    ran: list[str] = []
    order = Saga("refundable")

    @order.step(retry=Retry.none())
    def charge(ctx: StepContext) -> str:
        return "charged"

    @charge.compensate(retry=Retry.fixed(1, attempts=2), timeout=120)
    async def refund(ctx: StepContext) -> None:
        ran.append(f"refund #{ctx.attempt}")

    @order.step(retry=Retry.none())
    def ship(ctx: StepContext) -> None:
        raise PermanentError("no address")

    saga_coordinator.register(order)
    saga_coordinator.hang(refund)
    view = saga_coordinator.run_until_rest(saga_coordinator.start("refundable", saga_id="r"))

    assert view.status is SagaStatus.COMPENSATED and ran == ["refund #2"]
    [started, _] = _of_type(saga_coordinator, "r", ev.CompensationAttemptStarted)
    [failure] = _of_type(saga_coordinator, "r", ev.CompensationAttemptFailed)
    assert failure.timed_out and failure.at == started.timeout_at == started.at + timedelta(minutes=2)


@pytest.mark.parametrize("is_async", [False, True])
def test_a_step_sleeping_on_the_clock_past_its_limit_times_out_there(
    saga_coordinator: SagaTestCoordinator, saga_clock: SagaTestClock, is_async: bool
) -> None:
    slept: list[int] = []
    polling = Saga("polling", deadline=10 * HOUR)

    def wait_for_report(ctx: StepContext) -> str:
        # The service answers after 90 minutes on the first attempt, at once afterwards.
        saga_clock.sleep(90 * 60 if ctx.attempt == 1 else 1)
        slept.append(ctx.attempt)
        return "report"

    async def wait_for_report_async(ctx: StepContext) -> str:
        await asyncio.sleep(0)
        return wait_for_report(ctx)

    polling.step(name="report", retry=Retry.fixed(60, attempts=3), timeout=HOUR)(
        wait_for_report_async if is_async else wait_for_report
    )
    saga_coordinator.register(polling)
    began = saga_clock.now()
    view = saga_coordinator.run_until_rest(saga_coordinator.start("polling", saga_id="p"))

    assert view.status is SagaStatus.COMPLETED
    assert slept == [2]
    [failure] = _of_type(saga_coordinator, "p", ev.StepAttemptFailed)
    assert failure.timed_out and failure.at == began + timedelta(hours=1)
    [succeeded] = _of_type(saga_coordinator, "p", ev.StepSucceeded)
    assert succeeded.at == began + timedelta(hours=1, minutes=1, seconds=1)


def test_a_step_that_blocks_for_real_times_out_on_real_time(
    saga_coordinator: SagaTestCoordinator,
) -> None:
    release = threading.Event()
    blocking = Saga("blocking")
    blocking.step(name="stuck", retry=Retry.none(), timeout=0.2)(lambda ctx: release.wait(10))
    saga_coordinator.register(blocking)
    try:
        real = time.perf_counter()
        view = saga_coordinator.run_until_rest(saga_coordinator.start("blocking", saga_id="x"))
        assert 0.2 <= time.perf_counter() - real < 5.0
    finally:
        release.set()
    assert view.status is SagaStatus.COMPENSATED
    [failure] = _of_type(saga_coordinator, "x", ev.StepAttemptFailed)
    assert failure.timed_out


# -- assert_history -------------------------------------------------------------------------------


def test_assert_history_passes_on_the_same_types_and_shows_a_diff_otherwise(
    saga_coordinator: SagaTestCoordinator,
) -> None:
    ran: list[str] = []
    saga_coordinator.register(_order(ran))
    saga_coordinator.fail("charge", error=ConnectionError("bank down"))
    saga_coordinator.run_until_rest(saga_coordinator.start("order", saga_id="h"))
    expected: list[str | type[ev.Event]] = [
        ev.SagaStarted, "StepAttemptStarted", "StepAttemptFailed", "StepAttemptStarted",
        "StepSucceeded", "StepAttemptStarted", "StepSucceeded", ev.SagaCompleted,
    ]
    saga_coordinator.assert_history("h", expected)

    with pytest.raises(AssertionError) as caught:
        saga_coordinator.assert_history("h", ["SagaStarted", "StepAttemptStarted", "StepSucceeded"])
    text = str(caught.value)
    assert "saga h: history differs from the expected 3 events (it has 8)" in text
    assert "--- expected\n+++ actual\n" in text
    assert "+StepAttemptFailed" in text
    assert "   3 StepAttemptFailed  charge #1  ConnectionError: bank down" in text

    with pytest.raises(InvalidInput, match="expected must be a list"):
        saga_coordinator.assert_history("h", "SagaStarted")
    with pytest.raises(InvalidInput, match="expected event type names or event classes"):
        saga_coordinator.assert_history("h", loose([42]))


# -- the plugin, as a user's test suite sees it ---------------------------------------------------

def _readme_example() -> str:
    """The test file docs/testing.md's "Testing your sagas" shows (its one Python block)."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text()
    section = page.split("\n## Testing your sagas\n", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert isinstance(block, str) and block.startswith("# test_trip.py\n")
    return block


README_EXAMPLE = _readme_example()


def test_the_readme_example_passes_through_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_trip=README_EXAMPLE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--durations=0", "-vv")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*plugins:*saga*"])


def test_a_wrong_history_fails_the_users_test_with_a_diff(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_trip=README_EXAMPLE + '''

def test_wrong(coordinator):
    coordinator.run_until_rest(coordinator.start("book-trip", saga_id="order-3"))
    coordinator.assert_history("order-3", ["SagaStarted", "SagaCompleted"])
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "wrong")
    result.assert_outcomes(passed=0, failed=1, deselected=2)
    result.stdout.fnmatch_lines([
        "*saga order-3: history differs from the expected 2 events (it has 6):",
        "*--- expected",
        "*+++ actual",
        "* SagaStarted",
        "*+StepAttemptStarted",
        "*   5 StepSucceeded  book_hotel #1",
    ])
    assert "saga/testing/coordinator.py" not in result.stdout.str()


def test_each_test_gets_a_fresh_store_and_its_faults_end_with_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_fresh='''
from saga import Retry, Saga, SagaStatus, VirtualClock
from saga.testing.plugin import DEFAULT_BACKEND, MEMORY_URL

calls = []
s = Saga("s")

@s.step(retry=Retry.none())
async def only(ctx):
    calls.append(ctx.saga_id)

def test_first(saga_coordinator, saga_store, saga_store_url, saga_clock):
    assert isinstance(saga_clock, VirtualClock) and saga_coordinator.clock is saga_clock
    assert saga_coordinator.store is saga_store
    assert DEFAULT_BACKEND == "memory" and saga_store_url == MEMORY_URL == "memory://"
    saga_coordinator.register(s)
    saga_coordinator.fail(only, times=None)
    assert saga_coordinator.run_until_rest(saga_coordinator.start("s", saga_id="a")).status \\
        is SagaStatus.COMPENSATED
    assert calls == []

def test_second(saga_coordinator, saga_store):
    assert saga_store.find() == []
    saga_coordinator.register(s)
    assert saga_coordinator.run_until_rest(saga_coordinator.start("s", saga_id="b")).status \\
        is SagaStatus.COMPLETED
    assert calls == ["b"]
''')
    monkeypatch.delenv("SAGA_TEST_POSTGRES_URL", raising=False)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_suite_chooses_its_store_by_overriding_the_url_fixture(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = tmp_path_factory.mktemp("shared") / "suite.db"
    pytester.makeconftest(f'''
import pytest

@pytest.fixture
def saga_store_url():
    return "sqlite:///{shared}"
''')
    pytester.makepyfile(test_url='''
def test_url(saga_store):
    assert saga_store.find() == []
''')
    monkeypatch.delenv("SAGA_TEST_POSTGRES_URL", raising=False)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert shared.exists()


@pytest.mark.postgres
def test_with_a_postgres_url_each_test_gets_a_fresh_postgres_database(
    pytester: pytest.Pytester, postgres_databases: PostgresDatabases,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytester.makepyfile(test_pg='''
import pytest
from saga import Saga, SagaStatus

s = Saga("pg")
s.step(lambda ctx: "ok", name="one")

@pytest.mark.parametrize("n", [1, 2])
def test_fresh(saga_coordinator, saga_store, saga_store_url, n):
    assert saga_store_url.startswith("postgresql")
    assert saga_store.find() == []
    saga_coordinator.register(s)
    saga_coordinator.fail("one", times=2)
    view = saga_coordinator.run_until_rest(saga_coordinator.start("pg", saga_id="same"))
    assert view.status is SagaStatus.COMPLETED and view.steps["one"].attempts == 3
''')
    monkeypatch.setenv("SAGA_TEST_POSTGRES_URL", postgres_admin_url())
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_an_unreachable_postgres_url_fails_with_one_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_pg='''
def test_store(saga_store):
    pass
''')
    monkeypatch.setenv(
        "SAGA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:1/postgres"
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*$SAGA_TEST_POSTGRES_URL is set but PostgreSQL cannot be used:*"])

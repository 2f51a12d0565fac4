"""Pins the public API's types: mypy checks this file, pytest runs it."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, assert_type

import pytest

from saga import (
    Attempt,
    BulkResult,
    Compensation,
    Coordinator,
    EventStore,
    Filters,
    PermanentError,
    Problem,
    Retry,
    Saga,
    SagaStatus,
    SagaSummary,
    SagaView,
    Step,
    StepContext,
    StoredEvent,
    Timeline,
    VirtualClock,
    act_on_sagas,
    cancel,
    check_deploy,
    fork,
    generate_key,
    retry,
    select_sagas,
    show_timeline,
    skip,
)
from saga.inspection import history


def test_public_api_types(tmp_path: Path) -> None:
    trip = Saga("typed-trip", version=1)

    decorator = trip.step(retry=Retry.fixed(0.1, attempts=2), timeout=1.0)
    assert_type(decorator, Callable[[Callable[[StepContext], Any]], Step])

    @decorator
    def reserve(ctx: StepContext) -> dict[str, str]:
        return {"ref": ctx.idempotency_key}

    assert_type(reserve, Step)

    @reserve.compensate
    def cancel(ctx: StepContext) -> None:
        """Nothing to undo in this test."""

    assert_type(cancel, Compensation)

    with EventStore(f"sqlite:///{tmp_path / 't.db'}") as store:
        assert_type(store, EventStore)
        coordinator = Coordinator(store, sagas=[trip], clock=VirtualClock())
        saga_id = coordinator.start("typed-trip", {"x": 1})
        assert_type(saga_id, str)
        view = coordinator.run(saga_id)
        assert_type(view, SagaView)
        assert_type(view.status, SagaStatus)
        assert view.status is SagaStatus.COMPLETED
        history = store.load(saga_id)
        assert_type(history, list[StoredEvent])
        found = store.find(status=SagaStatus.COMPLETED, limit=5)
        assert_type(found, list[SagaSummary])
        assert [s.saga_id for s in found] == [saga_id]
        assert_type(coordinator.work(until_idle=True), int)


# -- the public surface -------------------------------------------------------------------------

PUBLIC: dict[str, list[str]] = {
    "saga": [
        "Attempt", "BulkResult", "Clock", "Compensation", "ConcurrencyError", "Coordinator",
        "DefinitionError", "DefinitionMismatch", "ErrorInfo", "EventLog", "EventStore", "Filters",
        "InvalidInput", "InvalidOperation", "LeaseHeld", "PayloadTooLarge", "PermanentError",
        "PolicyError", "Problem", "Retry", "Saga", "SagaError", "SagaIdConflict", "SagaNotFound",
        "SagaStatus", "SagaSummary", "SagaView", "Step", "StepContext", "StepView", "StoreError",
        "StoredEvent", "SystemClock", "TargetError", "Timeline", "UnknownSagaName", "VirtualClock",
        "act_on_sagas", "cancel", "check_deploy", "fork", "generate_key", "retry", "select_sagas",
        "show_timeline", "skip",
    ],
    "saga.adapters": [
        "Adapter", "AdapterError", "AllReplicasFailed", "BreakerState", "CallTimedOut",
        "CircuitBreaker", "CircuitOpen", "CompensationFailed", "ConnectionFailed", "Failover",
        "Faulty", "Function", "Hedge", "Http", "HttpBodyTooLarge", "HttpError", "HttpRejected",
        "InjectedFault", "InvalidAdapter", "InvalidRequest", "MissingDependency",
        "ParticipantRejected", "ParticipantUnavailable", "SqlParticipant",
    ],
    "saga.testing": [
        "EventLogContract", "Fault", "InjectedFailure", "SagaDidNotRest", "SagaTestClock",
        "SagaTestCoordinator", "load_events",
    ],
    "saga.simulate": [
        "CallModel", "Disagreement", "Distribution", "Effect", "Empirical", "Exponential", "Figure",
        "Fixed", "LogNormal", "LogProfile", "Measurements", "PlotUnavailable", "Report",
        "SagaPrediction", "SagaRun", "Scenario", "SimulatedFault", "StepPrediction", "StepProfile",
        "StepRun", "Summary", "Uniform", "build_report", "check_plot_path", "draw", "mean_interval",
        "parse_distribution", "parse_policy", "percentile", "percentile_interval", "plot",
        "predict", "read_profile", "require_matplotlib", "simulate", "summarise", "wilson",
    ],
}
"""Every public module and the names it exports: a name added, renamed or dropped is a change
of the API, made here on purpose."""


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_a_public_module_exports_exactly_its_names(module: str) -> None:
    exported = importlib.import_module(module).__all__
    assert sorted(exported) == sorted(set(exported)), "a name is exported twice"
    assert sorted(exported) == PUBLIC[module]


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_public_name_resolves(module: str) -> None:
    imported = importlib.import_module(module)
    missing = [n for n in imported.__all__ if not hasattr(imported, n)]
    assert missing == []
    # what a star import gives is the list, and nothing of it is a module
    space: dict[str, Any] = {}
    exec(f"from {module} import *", space)
    assert sorted(n for n in space if n != "__builtins__") == PUBLIC[module]
    assert not [n for n in imported.__all__ if isinstance(getattr(imported, n), ModuleType)]


def test_importing_saga_leaves_the_sql_backends_the_tools_and_the_console_unloaded() -> None:
    """``import saga`` stays light: a backend loads when a store is opened, a tool when run."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, saga; print('\\n'.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert "saga" in loaded and "saga.operators.bulk" in loaded  # it did import the surface
    heavy = ("saga.store.sql", "saga.store.sqlite", "saga.store.postgres", "saga.store.sqlreads",
             "saga.cli", "saga.ui", "saga.simulate", "saga.testing", "saga.adapters",
             "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql", "psycopg")
    assert [m for m in loaded if m.startswith(heavy)] == []


def _order() -> Saga:
    """A saga whose input says how it goes: ``card`` (ok, flaky, declined) and ``release``
    (ok, stuck: the compensation gives up)."""
    order = Saga("typed-order", version=1)

    @order.step()
    def reserve(ctx: StepContext) -> dict[str, str]:
        return {"hold": ctx.idempotency_key}

    @reserve.compensate
    def release(ctx: StepContext) -> None:
        if ctx.input["release"] == "stuck":
            raise PermanentError("the warehouse refuses to release the hold")

    @order.step(retry=Retry.fixed(60.0, attempts=3))
    def charge(ctx: StepContext) -> dict[str, str]:
        if ctx.input["card"] == "declined":
            raise PermanentError("card declined")
        if ctx.input["card"] == "flaky":
            raise ConnectionError("the bank did not answer")
        return {"charge": "c-1"}

    return order


def test_the_operator_and_inspection_surface_types(tmp_path: Path) -> None:
    order = _order()
    clock = VirtualClock()
    key = generate_key()
    assert_type(key, str)
    assert len(key) == 44

    with EventStore(f"sqlite:///{tmp_path / 'ops.db'}") as store, \
            Coordinator(store, sagas=[order], clock=clock) as coordinator:
        declined = coordinator.execute("typed-order", {"card": "declined", "release": "ok"})
        assert declined.status is SagaStatus.COMPENSATED

        lines = show_timeline(store, declined.saga_id)
        assert_type(lines, Iterator[str])
        assert any("card declined" in line for line in lines)

        data = history.timeline(declined.saga_id, store.load(declined.saga_id))
        assert_type(data, Timeline)
        attempts = data.attempts
        assert_type(attempts, tuple[Attempt, ...])
        assert [(a.step, a.compensation, a.outcome) for a in attempts] == [
            ("reserve", False, "succeeded"), ("charge", False, "failed"),
            ("reserve", True, "succeeded")]

        forked = fork(store, clock, declined.saga_id, from_step="charge",
                      input={"card": "ok", "release": "ok"}, sagas=[order], reason="card fixed",
                      by="tests")
        assert_type(forked, str)
        assert coordinator.run(forked).status is SagaStatus.COMPLETED

        stuck = coordinator.execute("typed-order", {"card": "declined", "release": "stuck"})
        assert stuck.status is SagaStatus.FAILED
        retried = retry(store, clock, stuck.saga_id, reason="warehouse fixed", by="tests")
        assert_type(retried, SagaView)
        assert retried.status is SagaStatus.COMPENSATING

        flaky = coordinator.start("typed-order", {"card": "flaky", "release": "ok"})
        coordinator.work(until_idle=True)  # charge failed once and waits a minute to retry
        skipped = skip(store, clock, flaky, "charge", result={"charge": "by hand"}, sagas=[order],
                       reason="charged by phone", by="tests")
        assert_type(skipped, SagaView)
        assert coordinator.run(flaky).status is SagaStatus.COMPLETED

        waiting = coordinator.start("typed-order", {"card": "ok", "release": "ok"})
        problems = check_deploy(store, [])
        assert_type(problems, Iterator[Problem])
        found = {(p.saga_id, p.kind) for p in problems}
        assert (waiting, "not_registered") in found
        assert_type(cancel(store, clock, waiting, reason="changed my mind", by="tests"), SagaView)

        # the worker gave the retried saga's compensation its fresh attempts, and it gave up again
        selected = select_sagas(store, Filters(status=SagaStatus.FAILED, name="typed-order"),
                                "retry")
        assert_type(selected, Iterator[str])
        ids = list(selected)
        assert ids == [stuck.saga_id]
        done = act_on_sagas(store, clock, [*ids, waiting], "retry", reason="bulk", by="tests")
        assert_type(done, BulkResult)
        assert done.acted == ids and [sid for sid, _ in done.skipped] == [waiting]
        assert isinstance(Compensation, type)

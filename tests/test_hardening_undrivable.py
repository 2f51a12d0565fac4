"""Sagas that cannot be driven: refused when defined if their limits cannot be represented,
parked with a reason (once) and backed off when a drive fails, and a worker with
``--until-idle`` that waits for retries due at once but not for parked or leased sagas."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import tenacity

from saga import (
    Coordinator,
    EventStore,
    InvalidInput,
    PolicyError,
    Retry,
    Saga,
    SagaError,
    SagaStatus,
    StepContext,
    VirtualClock,
)
from saga.secrets.keys import ENV_VAR, generate_key
from tests.cli_run import run
from tests.helpers import loose, of_type, open_store
from tests.ui_log import HTTP, free_port, serving

# -- limits that cannot be represented are refused when the saga is defined ------------------

_HUGE = 1e12  # seconds: about 31,700 years, past the last date a datetime holds


def _step_with(timeout: float) -> Callable[[], object]:
    def define() -> object:
        saga = Saga("limits")

        @saga.step(timeout=timeout)
        def a(ctx: StepContext) -> None:
            return None

        return saga
    return define


def _compensation_with(timeout: float) -> Callable[[], object]:
    def define() -> object:
        saga = Saga("limits")

        @saga.step
        def a(ctx: StepContext) -> None:
            return None

        a.compensate(timeout=timeout)(lambda ctx: None)
        return saga
    return define


@pytest.mark.parametrize("define", [
    lambda: Retry.fixed(_HUGE, attempts=3),
    lambda: Retry.fixed(float("inf")),
    lambda: Retry.fixed(timedelta.max),
    lambda: Retry.fixed(1.0, max_elapsed=_HUGE),
    lambda: Retry.fixed(1.0, max_elapsed=float("inf")),
    lambda: Retry.exponential(initial=1.0, maximum=_HUGE),
    lambda: Retry.exponential(initial=float("inf"), maximum=float("inf")),
    lambda: Retry.exponential(multiplier=float("inf")),
    lambda: Saga("limits", deadline=_HUGE),
    lambda: Saga("limits", deadline=timedelta.max),
    _step_with(timeout=_HUGE),
    _step_with(timeout=float("inf")),
    _compensation_with(timeout=_HUGE),
], ids=["fixed", "fixed-inf", "fixed-timedelta-max", "max_elapsed", "max_elapsed-inf",
        "exponential-maximum", "exponential-inf", "multiplier-inf", "deadline",
        "deadline-timedelta-max", "timeout", "timeout-inf", "compensation-timeout"])
def test_limits_that_cannot_be_represented_are_refused_when_defined(
    define: Callable[[], object],
) -> None:
    with pytest.raises(PolicyError) as caught:
        define()
    assert isinstance(caught.value, SagaError)
    message = str(caught.value)
    assert ("at most 1000 years" in message or "finite" in message) and "\n" not in message


def test_the_longest_limits_allowed_still_run() -> None:
    longest = timedelta(days=365_000)
    Retry.fixed(longest, max_elapsed=longest)
    saga = Saga("long", deadline=longest)

    @saga.step(timeout=longest, retry=Retry.exponential(maximum=longest))
    def a(ctx: StepContext) -> None:
        return None

    assert saga.deadline == longest.total_seconds()


@pytest.mark.parametrize("option", ["lease", "poll_interval"])
@pytest.mark.parametrize("value", [float("inf"), _HUGE])
def test_a_coordinator_refuses_a_lease_or_poll_interval_it_cannot_add_to_a_time(
    option: str, value: float,
) -> None:
    with open_store("memory://") as store, pytest.raises(InvalidInput, match=f"{option} must be"):
        Coordinator(store, **{option: loose(value)})


# -- a decision that raises parks the saga; cancel resolves it --------------------------------


def _overflowing(undone: list[str]) -> Saga:
    """A saga whose retry policy (built past the constructors' checks) waits 1e12 s."""
    saga = Saga("overflowing")

    @saga.step(retry=Retry(wait=tenacity.wait_fixed(_HUGE), attempts=3))
    def charge(ctx: StepContext) -> None:
        raise ConnectionError("the bank is down")

    @charge.compensate(retry=Retry.none())
    def refund(ctx: StepContext) -> None:
        undone.append(ctx.saga_id)

    return saga


def test_a_decision_that_raises_parks_the_saga_once_and_cancel_resolves_it(store_url: str) -> None:
    undone: list[str] = []
    clock = VirtualClock()
    with open_store(store_url) as store, Coordinator(store, [_overflowing(undone)], clock=clock,
                                                     lease=5.0) as coordinator:
        coordinator.start("overflowing", {}, saga_id="o1")
        drives = coordinator.work(until_idle=True)
        assert drives <= 2
        view = coordinator.get("o1")
        assert view.status is SagaStatus.RUNNING
        assert view.parked is not None and "charge" in view.parked, view.parked
        assert len(of_type(store, "o1", "SagaParked")) == 1
        [row] = store.list_sagas().rows
        assert row.parked == view.parked

        for _ in range(5):  # later passes back off further, and say nothing new
            clock.advance(3600)
            assert coordinator.work(until_idle=True) <= 2
        assert len(of_type(store, "o1", "SagaParked")) == 1
        summary = store.summary("o1")
        assert summary.wake_at is not None and summary.wake_at > clock.now() + timedelta(seconds=60)
        assert summary.lease_owner is None

        coordinator.cancel("o1", reason="stuck")
        coordinator.work(until_idle=True)
        view = coordinator.get("o1")
        assert view.status is SagaStatus.COMPENSATED, view
        assert view.parked is None
        assert undone == ["o1"]  # the attempt whose outcome was not recorded is in doubt
        assert store.list_sagas().rows[0].parked is None


def test_the_web_page_of_a_parked_saga_says_why(sqlite_url: str) -> None:
    pytest.importorskip("uvicorn")
    with open_store(sqlite_url) as store, Coordinator(store, [_overflowing([])],
                                                      clock=VirtualClock()) as coordinator:
        coordinator.start("overflowing", {}, saga_id="o1")
        coordinator.work(until_idle=True)
    with serving(sqlite_url, free_port()) as base:
        page = HTTP.get(f"{base}/sagas/o1", timeout=10)
        api = HTTP.get(f"{base}/api/sagas/o1", timeout=10)
    assert page.status_code == 200 and "parked: the drive failed: PolicyError: charge:" in page.text
    assert api.json()["parked"].startswith("the drive failed: PolicyError: charge:")


# -- a worker that cannot open a saga's secrets -------------------------------------------------

SECRETS = "tests.fixtures.secret_sagas"
PAY = json.dumps({"payer": "ada", "card": "4111-2222-3333-4444", "pin": "PIN-8080"})


def saga(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60,
         process: bool = False) -> subprocess.CompletedProcess[str]:
    """``saga ARGS`` (a real process with ``process=True``), with no key and no URL in its
    environment but ``env``."""
    return run(*args, env=env, unset=(ENV_VAR,), timeout=timeout, process=process)


def _drives(stderr: str) -> int:
    """How many drives a worker says it made."""
    found = re.findall(r"^worker \S+: (\d+) drives?\b", stderr, re.MULTILINE)
    assert len(found) == 1, stderr
    return int(found[0])


@pytest.mark.parametrize("key", ["wrong", "none"])
def test_a_worker_that_cannot_open_the_secrets_parks_the_saga_and_returns(
    sql_url: str, key: str,
) -> None:
    right = generate_key()
    started = saga("--db", sql_url, "--encryption-key", right, "start", SECRETS, "pay",
                   "--input", PAY, "--id", "p1")
    assert started.returncode == 0, started.stderr
    worker_env = {ENV_VAR: generate_key()} if key == "wrong" else {}

    t0 = time.monotonic()
    worker = saga("--db", sql_url, "worker", SECRETS, "--until-idle", timeout=30, env=worker_env)
    assert worker.returncode == 0, worker.stderr
    assert time.monotonic() - t0 < 15
    assert _drives(worker.stderr) <= 2
    assert "parked" in worker.stderr

    listed = saga("--db", sql_url, "list")
    assert listed.returncode == 0, listed.stderr
    assert "parked: cannot open secrets" in listed.stdout, listed.stdout
    shown = saga("--db", sql_url, "show", "p1")
    assert "parked: cannot open secrets" in shown.stdout, shown.stdout
    assert "4111" not in shown.stdout + listed.stdout + worker.stderr
    data = json.loads(saga("--db", sql_url, "show", "p1", "--json").stdout)
    assert data["parked"].startswith("cannot open secrets")

    time.sleep(1.2)  # past the first backoff: the next worker tries again, and says nothing new
    again = saga("--db", sql_url, "worker", SECRETS, "--until-idle", timeout=30, env=worker_env)
    assert again.returncode == 0 and _drives(again.stderr) <= 2, again.stderr
    with EventStore(sql_url) as store:
        assert len(of_type(store, "p1", "SagaParked")) == 1
        assert store.summary("p1").status is SagaStatus.RUNNING

    # with the right key, an operator's retry makes it drivable at once
    retried = saga("--db", sql_url, "retry", "p1", "--reason", "key fixed")
    assert retried.returncode == 0, retried.stderr
    done = saga("--db", sql_url, "worker", SECRETS, "--until-idle", timeout=30, env={ENV_VAR: right})
    assert done.returncode == 0, done.stderr
    with EventStore(sql_url) as store:
        assert store.summary("p1").status is SagaStatus.COMPLETED
    listed = saga("--db", sql_url, "list")
    assert "parked" not in listed.stdout


# -- until-idle: waits for retries due at once, reports leases held by others ----------------

WAITING = "tests.fixtures.waiting_sagas"


def test_until_idle_waits_for_a_retry_due_within_half_a_second(sql_url: str) -> None:
    started = saga("--db", sql_url, "start", WAITING, "soon", "--input", "{}", "--id", "s1")
    assert started.returncode == 0, started.stderr
    worker = saga("--db", sql_url, "worker", WAITING, "--until-idle")
    assert worker.returncode == 0, worker.stderr
    with EventStore(sql_url) as store:
        assert store.summary("s1").status is SagaStatus.COMPLETED
    assert _drives(worker.stderr) == 2


def test_until_idle_after_a_sigkill_says_a_lease_holds_the_saga(sql_url: str) -> None:
    started = saga("--db", sql_url, "start", WAITING, "hold", "--input", "{}", "--id", "h1")
    assert started.returncode == 0, started.stderr
    killed = saga("--db", sql_url, "worker", WAITING, "--until-idle", env={"WAITING_KILL": "1"},
                  process=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    t0 = time.monotonic()
    worker = saga("--db", sql_url, "worker", WAITING, "--until-idle")
    assert worker.returncode == 0, worker.stderr
    assert time.monotonic() - t0 < 15  # it does not wait for the lease
    assert _drives(worker.stderr) == 0
    [seconds] = re.findall(r"1 saga held by another worker's lease until \S+, in (\d+) s$",
                           worker.stderr, re.MULTILINE)
    assert 15 < int(seconds) <= 30  # the default lease, less the time since the kill


def test_until_idle_does_not_wait_for_a_parked_saga(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'saga.db'}"
    started = saga("--db", db, "--encryption-key", generate_key(), "start", SECRETS, "pay",
                   "--input", PAY, "--id", "p1")
    assert started.returncode == 0, started.stderr
    for _ in range(2):
        t0 = time.monotonic()
        worker = saga("--db", db, "worker", SECRETS, "--until-idle", env={ENV_VAR: generate_key()})
        assert worker.returncode == 0, worker.stderr
        assert time.monotonic() - t0 < 10


def test_a_saga_with_an_event_that_cannot_be_read_is_tried_again_later_not_at_once(
    sqlite_url: str,
) -> None:
    started = saga("--db", sqlite_url, "start", WAITING, "hold", "--input", "{}", "--id", "h1")
    assert started.returncode == 0, started.stderr
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:  # an event of a type this library does not know
        conn.execute(sa.text(
            "INSERT INTO saga_events (saga_id, seq, type, schema_version, data, recorded_at, "
            "writer, hash) VALUES ('h1', 2, 'FromTheFuture', 1, '{}', 0, 'w', :h)"), {"h": "0" * 64})
        conn.execute(sa.text("UPDATE sagas SET last_seq = 2 WHERE saga_id = 'h1'"))
    engine.dispose()
    worker = saga("--db", sqlite_url, "worker", WAITING, "--until-idle", timeout=30)
    assert worker.returncode == 0, worker.stderr
    assert _drives(worker.stderr) <= 2
    assert "event 2 cannot be read" in worker.stderr
    with EventStore(sqlite_url) as store:
        summary = store.summary("h1")
        assert summary.lease_owner is None and summary.wake_at is not None

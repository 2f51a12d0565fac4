"""Statistics in SQL equal the same figures counted in Python from the events, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

from saga import Coordinator, EventStore, PermanentError, Retry, Saga, StepContext, StoredEvent, VirtualClock
from saga.inspection.stats import attempts_from_events
from saga.store.reads import PERCENTILES, Stats, nearest_rank
from saga.store.schema import attempts
from saga.store.sql import SqlEventStore
from saga.store.sqlstats import compute_stats
from tests.helpers import WorkerDied

N_TRIPS = 24
N_ORDERS = 10


def _bench() -> ModuleType:
    """The benchmark module, whose attempts table is the prototype of the one the store will keep."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "history_queries.py"
    spec = importlib.util.spec_from_file_location("bench_history_queries_for_stats", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _engine(store: EventStore) -> sa.Engine:
    """The SQL engine behind a SQLite or PostgreSQL store."""
    assert isinstance(store, SqlEventStore)
    return store.engine


def derived(conn: sa.Connection, **kw: Any) -> Stats:
    """The statistics with every attempt derived from the events table alone."""
    return compute_stats(conn, attempts=attempts_from_events(), **kw)


def events_of(store: EventStore, saga_id: str) -> list[StoredEvent]:
    """A saga's stored events, oldest first."""
    return store.load(saga_id)


def _trip(clock: VirtualClock, die: set[str]) -> Saga:
    saga = Saga("trip")

    @saga.step(retry=Retry.fixed(1.0, attempts=3))
    def flight(ctx: StepContext) -> str:
        if ctx.saga_id in die:
            die.discard(ctx.saga_id)
            raise WorkerDied
        clock.advance(0.25 * (1 + int(ctx.saga_id[2:]) % 4))  # attempts take virtual time
        return "booked"

    @flight.compensate
    def cancel_flight(ctx: StepContext) -> None:
        if int(ctx.saga_id[2:]) % 2 and ctx.attempt == 1:
            raise RuntimeError("airline API down")

    @saga.step(retry=Retry.fixed(2.0, attempts=3), timeout=0.05)
    async def charge(ctx: StepContext) -> str:
        n = int(ctx.saga_id[2:])
        if n % 3 == 0 and ctx.attempt == 1:
            raise ConnectionError("bank busy")
        if n % 5 == 0 and ctx.attempt <= 2:
            await asyncio.sleep(2)  # times out
        if n % 7 == 0:
            raise PermanentError("card declined")
        if n % 11 == 0:
            raise ValueError("bad amount")
        clock.advance(0.1 * (n % 6))
        return "charged"

    return saga


def _order(clock: VirtualClock) -> Saga:
    saga = Saga("order")

    @saga.step
    def reserve(ctx: StepContext) -> str:
        clock.advance(1.0 + int(ctx.saga_id[2:]))
        return "reserved"

    @saga.step(retry=Retry.fixed(900.0, attempts=2))
    def ship(ctx: StepContext) -> str:
        if int(ctx.saga_id[2:]) % 4 == 0:
            raise TimeoutError("warehouse slow")  # then waits 15 minutes: still running
        return "shipped"

    return saga


@pytest.fixture
def log(sql_url: str) -> Iterator[tuple[EventStore, datetime, list[str]]]:
    """A log of trips and orders: retries, timeouts, a lost attempt, permanent failures, compensation,
    sagas still running. Yields the store, the time between the two halves, and every saga id."""
    clock = VirtualClock()
    die = {"t-4"}
    store = EventStore(sql_url)
    coordinator = Coordinator(store, [_trip(clock, die), _order(clock)], clock=clock, lease=10.0,
                              poll_interval=60.0)
    ids: list[str] = []
    middle = clock.now()
    for i in range(N_TRIPS):
        ids.append(coordinator.start("trip", None, saga_id=f"t-{i}"))
        if i == N_TRIPS // 2:
            clock.advance(3600)
            middle = clock.now()
    for i in range(N_ORDERS):
        ids.append(coordinator.start("order", None, saga_id=f"o-{i}"))
    for _ in range(12):
        try:
            coordinator.work(until_idle=True)
        except WorkerDied:
            clock.advance(11.0)  # the dead worker's lease runs out
            coordinator = Coordinator(store, [_trip(clock, die), _order(clock)], clock=clock, lease=10.0,
                                      poll_interval=60.0)
        clock.advance(2.5)
    yield store, middle, ids
    store.close()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def python_stats(store: EventStore, ids: list[str], *, name: str | None = None,
                 since: datetime | None = None) -> dict[str, Any]:
    """The same figures, counted from each saga's events in Python."""
    sagas: dict[str, Counter[str]] = defaultdict(Counter)
    steps: dict[str, Counter[str]] = defaultdict(Counter)
    durations: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    for saga_id in ids:
        history = events_of(store, saga_id)
        saga_name = history[0].data["name"]
        started = _epoch(history[0].data["at"])
        if name is not None and saga_name != name:
            continue
        if since is None or started >= since.timestamp():
            end = {"SagaCompleted": "completed", "SagaCompensated": "compensated", "SagaFailed": "failed"}
            status = "running"
            for e in history:
                if e.type in end:
                    status = end[e.type]
                elif e.type == "SagaRetryRequested":
                    status = "running"
            sagas[saga_name][status] += 1
        starts: dict[tuple[str, bool, int], float] = {}
        for e in history:
            at = _epoch(e.data["at"])
            key = f"{saga_name}/{e.data.get('step')}"
            comp = e.type.startswith("Compensation") or e.type == "StepCompensated"
            ident = (str(e.data.get("step")), comp, int(e.data.get("attempt", 0)))
            if e.type in ("StepAttemptStarted", "CompensationAttemptStarted"):
                starts[ident] = at
            if since is not None and ident in starts and starts[ident] < since.timestamp():
                continue
            if e.type in ("StepAttemptFailed", "CompensationAttemptFailed"):
                errors[e.data["error_type"]] += 1
            if comp:
                continue
            if e.type == "StepAttemptStarted":
                steps[key]["attempts"] += 1
            elif e.type == "StepSucceeded":
                steps[key]["successes"] += 1
                durations[key].append(at - starts[ident])
            elif e.type == "StepAttemptFailed":
                kind = "timeouts" if e.data["timed_out"] else "lost" if e.data["lost"] else "failures"
                steps[key][kind] += 1
                if kind != "lost":
                    durations[key].append(at - starts[ident])
    return {"sagas": sagas, "steps": steps, "durations": durations, "errors": errors}


def check(stats: Stats, expected: dict[str, Any]) -> None:
    data = stats.to_json()
    assert data["sagas"] == {
        n: {k: c[k] for k in ("completed", "compensated", "failed", "running")}
        for n, c in expected["sagas"].items()
    }
    assert set(data["steps"]) == set(expected["steps"])
    for key, figures in data["steps"].items():
        want = expected["steps"][key]
        for k in ("attempts", "successes", "failures", "timeouts", "lost"):
            assert figures[k] == want[k], (key, k)
        ratio = want["attempts"] / want["successes"] if want["successes"] else None
        assert figures["attempts_per_success"] == ratio
        values = sorted(expected["durations"][key])
        for p in PERCENTILES:
            if not values:
                assert figures[f"p{p}"] is None
            else:
                nearest = values[math.ceil(p / 100 * len(values)) - 1]
                assert figures[f"p{p}"] == pytest.approx(nearest, abs=1e-3), (key, p)
    commonest = sorted(expected["errors"].items(), key=lambda kv: (-kv[1], kv[0]))
    assert data["top_errors"] == [list(kv) for kv in commonest]


def test_stats_equal_counts_made_from_the_events(log: tuple[EventStore, datetime, list[str]]) -> None:
    store, _, ids = log
    expected = python_stats(store, ids)
    # the log exercises every kind of outcome
    trip_charge = expected["steps"]["trip/charge"]
    assert all(trip_charge[k] > 0 for k in ("attempts", "successes", "failures", "timeouts"))
    assert expected["steps"]["trip/flight"]["lost"] == 1
    assert expected["sagas"]["order"]["running"] > 0 and expected["sagas"]["trip"]["compensated"] > 0
    with _engine(store).connect() as conn:
        stats = derived(conn)
    check(stats, expected)
    check(store.stats(), expected)  # from the attempts table the store keeps


def test_stats_filtered_by_name_and_since(log: tuple[EventStore, datetime, list[str]]) -> None:
    store, middle, ids = log
    with _engine(store).connect() as conn:
        check(derived(conn, name="order"), python_stats(store, ids, name="order"))
        later = derived(conn, since=middle)
        check(later, python_stats(store, ids, since=middle))
        assert sum(later.sagas["trip"].to_json().values()) == N_TRIPS - N_TRIPS // 2 - 1
        nothing = derived(conn, name="nope")
    assert nothing.to_json() == {"sagas": {}, "steps": {}, "top_errors": []}


def test_the_attempts_table_the_store_keeps_gives_the_same_figures(
    log: tuple[EventStore, datetime, list[str]]
) -> None:
    store, middle, ids = log
    store.catch_up()  # the projection, up to date with the log
    with _engine(store).connect() as conn:
        for kw in ({}, {"name": "trip"}, {"since": middle}):
            check(compute_stats(conn, attempts=attempts, **kw), python_stats(store, ids, **kw))
            kept, from_events = compute_stats(conn, attempts=attempts, **kw), derived(conn, **kw)
            assert (kept.sagas, kept.top_errors, kept.steps.keys()) == (
                from_events.sagas, from_events.top_errors, from_events.steps.keys())
            assert store.stats(**kw) == kept  # what the store answers: the table, in one snapshot
            for key, step in kept.steps.items():
                other = from_events.steps[key]
                counts = ("attempts", "successes", "failures", "timeouts", "lost")
                assert [getattr(step, c) for c in counts] == [getattr(other, c) for c in counts]
                # the table subtracts the two instants; the events' path subtracts epoch seconds
                # near 2e9, which keeps about a tenth of a microsecond
                for ours, theirs in ((step.p50, other.p50), (step.p95, other.p95), (step.p99, other.p99)):
                    assert (ours is None) == (theirs is None)
                    assert ours is None or ours == pytest.approx(theirs, abs=1e-6)
        assert conn.execute(sa.select(sa.func.count()).select_from(attempts)).scalar_one() == sum(
            s.attempts for s in derived(conn).steps.values()
        ) + conn.execute(sa.text(
            "SELECT count(*) FROM saga_events WHERE type = 'CompensationAttemptStarted'")).scalar_one()


def test_top_errors_are_limited_and_commonest_first(log: tuple[EventStore, datetime, list[str]]) -> None:
    store, _, ids = log
    errors = python_stats(store, ids)["errors"]
    with _engine(store).connect() as conn:
        top = derived(conn, top=2).top_errors
    assert len(top) == 2
    assert [n for _, n in top] == sorted(errors.values(), reverse=True)[:2]


@pytest.mark.parametrize(("p", "n", "rank"), [(50, 1, 1), (50, 2, 1), (50, 3, 2), (95, 20, 19),
                                              (95, 21, 20), (99, 100, 99), (99, 101, 100), (50, 0, 1)])
def test_nearest_rank(p: int, n: int, rank: int) -> None:
    assert nearest_rank(p, n) == rank


def test_since_is_compared_as_an_instant(log: tuple[EventStore, datetime, list[str]]) -> None:
    store, middle, _ = log
    with _engine(store).connect() as conn:
        just_after = derived(conn, since=middle + timedelta(microseconds=1))
        at = derived(conn, since=middle)
    # the later trips and every order started at that very instant (starting takes no virtual time)
    assert sum(at.sagas["trip"].to_json().values()) == N_TRIPS - N_TRIPS // 2 - 1
    assert sum(at.sagas["order"].to_json().values()) == N_ORDERS
    assert just_after.sagas == {}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_benchmark_runs_and_both_attempt_sources_agree(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    args = ["--events", "3000", "--repeat", "1", "--backend", backend, "--dir", str(tmp_path)]
    if backend == "postgres":
        request.getfixturevalue("postgres_databases")  # skips (or fails on CI) without a server
    assert _bench().main(args) == 0  # it returns 1 if the two sources give different figures
    out = capsys.readouterr().out
    assert f"{backend}: built " in out and "raw: SELECT count(*) FROM saga_events" in out
    assert "list --failed-step charge" in out and "not run" not in out


def test_a_time_whose_fraction_rounds_up_to_the_next_second_is_read_exactly(sql_url: str) -> None:
    from saga import SagaStatus
    from saga import events as ev

    start = datetime(2030, 1, 1, 12, 0, 0, 100_000, tzinfo=UTC)
    end = datetime(2030, 1, 1, 12, 0, 0, 999_713, tzinfo=UTC)  # 0.999713 s: SQLite's ms round up
    with EventStore(sql_url) as store:
        store.create("s", [ev.SagaStarted(name="n", version=1, at=start),
                           ev.StepAttemptStarted(step="a", attempt=1, at=start)],
                     name="n", version=1, status=SagaStatus.RUNNING, wake_at=None, now=start)
        store.append("s", 2, [ev.StepSucceeded(step="a", attempt=1, at=end)],
                     status=SagaStatus.RUNNING, wake_at=None, now=end)
        store.catch_up()
        with _engine(store).connect() as conn:
            from_events = derived(conn).steps["n/a"]
            kept = compute_stats(conn, attempts=attempts).steps["n/a"]
    assert from_events.p50 == pytest.approx(0.899713, abs=1e-6)
    assert kept.p50 == pytest.approx(0.899713, abs=1e-6)

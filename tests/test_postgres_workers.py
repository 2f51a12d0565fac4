"""Many workers on one database: real processes, real signals, the real server.

The worker processes run ``tests/postgres_worker.py``; each step attempt
writes one line to a ledger file, so the tests count effects, not just events.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from saga import Coordinator, EventLog, EventStore, Retry, Saga, SagaStatus, StepContext
from saga._engine.reading import view as read_view
from saga.store.postgres import PostgresEventStore

from .postgres_worker import build_sagas, effect_counts, ledger_lines

ROOT = Path(__file__).resolve().parents[1]


class Worker:
    """A worker subprocess; stopped (SIGTERM, then SIGKILL) when the test ends."""

    def __init__(self, url: str, ledger: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.postgres_worker", url, "--ledger", str(ledger), *args],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"worker did not start: {line!r}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def count_status(store: EventLog, status: SagaStatus, name: str) -> int:
    return len(store.find(status=status, name=name, limit=10_000))


def check_logs(store: EventLog, ids: list[str], last: str) -> None:
    """Every saga ends with ``last``, its seq has no gap or duplicate, and nothing follows the end."""
    for sid in ids:
        log = store.load(sid)
        assert [e.seq for e in log] == list(range(1, len(log) + 1)), sid
        assert log[-1].type == last, (sid, [e.type for e in log])
        assert [e.type for e in log].count(last) == 1


# -- waking up ------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_an_idle_worker_wakes_on_notify_within_tens_of_ms(postgres_url: str, tmp_path: Path) -> None:
    seen: dict[str, float] = {}
    quick = Saga("quick")

    @quick.step()
    def mark(ctx: StepContext) -> None:
        seen[ctx.saga_id] = time.perf_counter()

    worker_store = EventStore(postgres_url)
    assert isinstance(worker_store, PostgresEventStore)
    # A polling period of 10 s: only a notification can wake the worker in time.
    worker = Coordinator(worker_store, [quick], poll_interval=10.0)
    stop = threading.Event()
    thread = threading.Thread(target=worker.work, kwargs={"stop": stop})
    keep = worker_store.subscribe()
    assert worker_store.listening(10.0)
    thread.start()
    latencies = []
    with EventStore(postgres_url) as client_store:
        client = Coordinator(client_store, [quick])
        try:
            for i in range(5):
                time.sleep(0.3)  # the worker is idle, asleep
                t0 = time.perf_counter()
                sid = client.start("quick", None, saga_id=f"q{i}")
                wait_for(lambda sid=sid: sid in seen, 5.0, f"the worker to run {sid}")
                latencies.append(seen[sid] - t0)
        finally:
            stop.set()
            thread.join(10)
            worker_store.close()
        del keep
        for i in range(5):
            assert read_view(client_store, f"q{i}").status is SagaStatus.COMPLETED
    assert max(latencies) < 0.2, latencies
    assert sorted(latencies)[2] < 0.1, latencies


def test_without_notifications_an_idle_worker_polls(sqlite_url: str) -> None:
    seen: list[float] = []
    quick = Saga("quick")

    @quick.step()
    def mark(ctx: StepContext) -> None:
        seen.append(time.perf_counter())

    with EventStore(sqlite_url) as store:
        worker = Coordinator(store, [quick], poll_interval=0.05)
        stop = threading.Event()
        thread = threading.Thread(target=worker.work, kwargs={"stop": stop})
        thread.start()
        try:
            time.sleep(0.2)
            t0 = time.perf_counter()
            worker.start("quick", None, saga_id="q")
            wait_for(lambda: bool(seen), 5.0, "the worker to run the saga")
        finally:
            stop.set()
            thread.join(10)
        assert seen[0] - t0 < 0.5
        assert read_view(store, "q").status is SagaStatus.COMPLETED


# -- SQLite: several processes on one file ------------------------------------------------------


def test_three_worker_processes_share_one_sqlite_file(sqlite_url: str, tmp_path: Path,
                                                      workers: list[Worker]) -> None:
    ledger = tmp_path / "ledger.txt"
    for _ in range(3):
        workers.append(Worker(sqlite_url, ledger, "--poll", "0.05", "--concurrency", "2",
                              "--step-pause", "0.002"))
    with EventStore(sqlite_url) as store:
        client = Coordinator(store, build_sagas(ledger))
        ids = [client.start("order", {"n": i}, saga_id=f"o{i:03}") for i in range(100)]
        wait_for(lambda: count_status(store, SagaStatus.COMPLETED, "order") == 100, 120,
                 "100 sagas to complete")
        check_logs(store, ids, "SagaCompleted")
    for w in workers:
        assert w.stop() == 0
    counts = effect_counts(ledger)
    assert len(counts) == 300
    assert set(counts.values()) == {1}, "each step's effect happened exactly once"
    pids = {pid for _, _, pid in ledger_lines(ledger)}
    assert len(pids) >= 2, "the work was shared between processes"


# -- PostgreSQL: a worker paused past its lease -------------------------------------------------


@pytest.mark.postgres
def test_a_worker_paused_past_its_lease_writes_nothing_and_carries_on(
    postgres_url: str, tmp_path: Path, workers: list[Worker]
) -> None:
    ledger, gate = tmp_path / "ledger.txt", tmp_path / "gate"
    paused = Worker(postgres_url, ledger, "--lease", "1", "--gate", str(gate),
                    "--worker-id", "paused")
    workers.append(paused)
    with EventStore(postgres_url) as store:
        rescuer = Coordinator(store, build_sagas(ledger, gate), lease=1.0, worker_id="rescuer")
        rescuer.start("gated", None, saga_id="g1")
        wait_for(lambda: any(pid == paused.pid for _, _, pid in ledger_lines(ledger)), 10,
                 "the worker to start the gated step")
        os.kill(paused.pid, signal.SIGSTOP)
        time.sleep(1.5)  # its lease runs out while it is stopped
        gate.touch()
        view = rescuer.run("g1")
        assert view.status is SagaStatus.COMPLETED
        assert view.results["wait_for_gate"] == 2
        before = [(e.seq, e.type, e.writer) for e in store.load("g1")]
        os.kill(paused.pid, signal.SIGCONT)
        # The paused worker's step returns now; its outcome must be refused. Its next
        # saga shows it carried on (it drives one saga at a time, so the stale one is done).
        rescuer.start("order", {"n": 1}, saga_id="after")
        wait_for(lambda: read_view(store, "after").status is SagaStatus.COMPLETED, 15,
                 "the resumed worker to drive a new saga")
        assert paused.alive()
        after = [(e.seq, e.type, e.writer) for e in store.load("g1")]
        assert after == before, "the paused worker wrote nothing to the saga it lost"
        assert [t for _, t, _ in after] == [
            "SagaStarted", "StepAttemptStarted", "StepAttemptFailed", "StepAttemptStarted",
            "StepSucceeded", "SagaCompleted",
        ]
        assert [w for _, _, w in after[1:]] == ["paused"] + ["rescuer"] * 4
        lost = store.load("g1")[2].event
        assert getattr(lost, "lost", False) is True
        assert {e.writer for e in store.load("after")[1:]} == {"paused"}


# -- PostgreSQL: every backend terminated mid-run -----------------------------------------------


def _terminate_all(postgres_url: str) -> int:
    u = sa.make_url(postgres_url)
    conninfo = u.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(conninfo, autocommit=True) as admin:
        return len(admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (u.database,)
        ).fetchall())


@pytest.mark.postgres
def test_workers_reconnect_after_every_backend_is_terminated(
    postgres_url: str, tmp_path: Path, workers: list[Worker]
) -> None:
    ledger = tmp_path / "ledger.txt"
    for _ in range(3):
        workers.append(Worker(postgres_url, ledger, "--lease", "3", "--concurrency", "2",
                              "--step-pause", "0.005"))
    total = 150
    with EventStore(postgres_url) as store:
        client = Coordinator(store, build_sagas(ledger))
        ids = [client.start("order", {"n": i}, saga_id=f"o{i:03}") for i in range(total)]
        terminated = 0
        for fraction in (0.2, 0.5, 0.8):
            wait_for(lambda f=fraction: len(effect_counts(ledger)) >= f * 3 * total, 60,
                     f"{fraction:.0%} of the steps")
            terminated += _terminate_all(postgres_url)
        assert terminated >= 9, "workers' pools, listeners and the client were all cut"
        wait_for(lambda: count_status(store, SagaStatus.COMPLETED, "order") == total, 60,
                 "every saga to complete")
        check_logs(store, ids, "SagaCompleted")
        assert all(w.alive() for w in workers)
        for sid in ids:
            succeeded = [e for e in store.load(sid) if e.type == "StepSucceeded"]
            assert len(succeeded) == 3
    for w in workers:
        assert w.stop() == 0
    counts = effect_counts(ledger)
    assert len(counts) == 3 * total
    assert max(counts.values()) == 1, "no step ran twice: nothing was lost or replayed"


# -- two coordinators recovering the same saga --------------------------------------------------


class Died(BaseException):
    """Stands in for the process dying mid-attempt: no outcome is recorded."""


def _crashed_saga(url: str, ledger: Path, gate: Path) -> None:
    """Leave saga ``c1`` with attempt 1 started by a worker that died (lease 0.5 s)."""
    dying = Saga("gated", version=1)

    @dying.step(retry=Retry.fixed(0.0, attempts=5))
    def wait_for_gate(ctx: StepContext) -> int:
        raise Died

    with EventStore(url) as store:
        crashed = Coordinator(store, [dying], lease=0.5, worker_id="dead")
        with pytest.raises(Died):
            crashed.execute("gated", None, saga_id="c1")
        crashed.close()
    gate.touch()
    time.sleep(0.7)  # the dead worker's lease expires


@pytest.mark.parametrize("how", ["run", "work"])
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_coordinators_recovering_one_saga_one_story(
    backend: str, how: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (str(request.getfixturevalue("postgres_url")) if backend == "postgres"
           else f"sqlite:///{tmp_path / 'saga.db'}")
    ledger, gate = tmp_path / "ledger.txt", tmp_path / "gate"
    _crashed_saga(url, ledger, gate)
    stores = [EventStore(url) for _ in range(2)]
    coordinators = [
        Coordinator(s, build_sagas(ledger, gate), lease=5.0, worker_id=f"c{i}", poll_interval=0.05)
        for i, s in enumerate(stores)
    ]
    barrier = threading.Barrier(2)
    driven: dict[str, int] = {}

    def recover(c: Coordinator) -> None:
        barrier.wait()
        if how == "run":
            assert c.run("c1").status is SagaStatus.COMPLETED
        else:
            driven[c.worker_id] = c.work(until_idle=True)

    threads = [threading.Thread(target=recover, args=(c,)) for c in coordinators]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        log = stores[0].load("c1")
        assert [e.type for e in log] == [
            "SagaStarted", "StepAttemptStarted", "StepAttemptFailed", "StepAttemptStarted",
            "StepSucceeded", "SagaCompleted",
        ]
        assert [e.seq for e in log] == list(range(1, 7))
        writers = {e.writer for e in log[2:]}
        assert len(writers) == 1 and writers <= {"c0", "c1"}, writers
        if how == "work":
            assert sorted(driven.values()) == [0, 1]
        # The step ran once after the crash: one attempt, by the winner.
        assert [a for _, a, _ in ledger_lines(ledger)] == [2]
    finally:
        for c in coordinators:
            c.close()
        for s in stores:
            s.close()

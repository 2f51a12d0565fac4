"""Crash recovery with real processes and real signals.

A coordinator subprocess drives a saga and is SIGKILLed: from outside while
a step blocks, or by itself at a chosen boundary (just before or just after
an append's commit, or after a step's effect reached the participant but
before its outcome was appended). A new coordinator then finishes the saga,
and the log and the participant's ledger are checked against the guarantees.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from saga import Coordinator, EventStore, SagaNotFound, SagaStatus, StoredEvent
from saga._engine.reading import view as read_view

from .procs.invariants import lost_attempts, open_attempts, saga_problems
from .procs.ledger import Ledger
from .procs.sagas import CRASH_STEPS, crash_sagas

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.xdist_group("torture")  # on the torture's worker, one run at a time

CHILD_TIMEOUT = 60.0
LEASE = 0.5

# Events each commit of a clean run appends, in order (the first commit creates the saga).
COMMITS = {
    "crash-ok": [
        ["SagaStarted", "StepAttemptStarted"],
        ["StepSucceeded", "StepAttemptStarted"],
        ["StepSucceeded", "StepAttemptStarted"],
        ["StepSucceeded", "SagaCompleted"],
    ],
    "crash-comp": [
        ["SagaStarted", "StepAttemptStarted"],
        ["StepSucceeded", "StepAttemptStarted"],
        ["StepSucceeded", "StepAttemptStarted"],
        ["StepAttemptFailed", "StepFailed", "CompensationStarted", "CompensationAttemptStarted"],
        ["StepCompensated", "CompensationAttemptStarted"],
        ["StepCompensated", "SagaCompensated"],
    ],
}
FINAL = {"crash-ok": SagaStatus.COMPLETED, "crash-comp": SagaStatus.COMPENSATED}


@dataclass(frozen=True)
class KillPoint:
    """Where the coordinator process dies: at an append's commit, or after an effect."""

    commit: int = 0  # the n-th commit that writes events
    after: bool = False  # after that commit returned (else just before it)
    effect: str | None = None  # a step ("b") or a compensation ("undo:b")
    log_before: int = 0  # how many commits are in the log when it dies (with ``effect``)
    open_attempt: tuple[str, str, int] | None = None  # the attempt it leaves without outcome

    @property
    def name(self) -> str:
        if self.effect is not None:
            return f"after-effect-{self.effect.replace(':', '-')}"
        return f"{'after' if self.after else 'before'}-commit-{self.commit}"

    def args(self) -> list[str]:
        if self.effect is not None:
            return ["--after-effect", self.effect]
        return ["--kill-append", str(self.commit), *(["--after"] if self.after else [])]

    def commits_in_log(self) -> int:
        if self.effect is not None:
            return self.log_before
        return self.commit if self.after else self.commit - 1


def kill_points(saga: str) -> list[KillPoint]:
    """Every boundary of a clean run of ``saga``."""
    points = [
        KillPoint(commit=n, after=after)
        for n in range(1, len(COMMITS[saga]) + 1)
        for after in (False, True)
    ]
    # (effect, commits in the log while it runs, the attempt it leaves open)
    effects = [("a", 1, ("do", "a", 1)), ("b", 2, ("do", "b", 1))]
    if saga == "crash-ok":
        effects.append(("c", 3, ("do", "c", 1)))
    else:
        # c fails for good; dying inside it loses the attempt before it could fail
        effects += [
            ("c", 3, ("do", "c", 1)),
            ("undo:b", 4, ("undo", "b", 1)),
            ("undo:a", 5, ("undo", "a", 1)),
        ]
    points += [KillPoint(effect=e, log_before=n, open_attempt=a) for e, n, a in effects]
    return points


def _child(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.procs.crash_worker", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False,
    )


def _create_ledger(url: str) -> None:
    ledger = Ledger(url)
    ledger.create_tables()
    ledger.close()


def _history(store: EventStore, saga_id: str) -> list[StoredEvent]:
    try:
        return store.load(saga_id)
    except SagaNotFound:
        return []


def _crash_and_recover(url: str, ledger_url: str, saga: str, point: KillPoint, saga_id: str
                       ) -> list[str]:
    """Kill a coordinator at ``point``, finish the saga in a new one; the problems found."""
    child = _child([
        "--url", url, "--ledger", ledger_url, "--saga", saga, "--id", saga_id,
        "--lease", str(LEASE), *point.args(),
    ])
    where = f"{saga} {point.name}"
    if child.returncode != -signal.SIGKILL:
        return [f"{where}: the coordinator was not killed (exit {child.returncode}): "
                f"{child.stdout.strip()} {child.stderr.strip()[-2000:]}"]
    problems: list[str] = []
    ledger = Ledger(ledger_url)
    store = EventStore(url)
    try:
        before = _history(store, saga_id)
        expected = [t for batch in COMMITS[saga][:point.commits_in_log()] for t in batch]
        if [e.type for e in before] != expected:
            problems.append(f"{where}: log at the crash is {[e.type for e in before]}, "
                            f"expected {expected}")
        left_open = open_attempts(before)
        if point.open_attempt is not None and left_open != {point.open_attempt}:
            problems.append(f"{where}: attempts left open {left_open}, expected "
                            f"{{{point.open_attempt}}}")

        restarted = Coordinator(store, sagas=crash_sagas(ledger), lease=LEASE)
        view = restarted.execute(saga, {"order": saga_id}, saga_id=saga_id)
        restarted.close()
        if view.status is not FINAL[saga]:
            problems.append(f"{where}: ended {view.status.value}, expected {FINAL[saga].value}")

        after = store.load(saga_id)
        if [(e.seq, e.type, e.data) for e in after[:len(before)]] != [
            (e.seq, e.type, e.data) for e in before
        ]:
            problems.append(f"{where}: the log written before the crash changed")
        missing = left_open - lost_attempts(after)
        if missing:
            problems.append(f"{where}: attempts open at the crash not recorded as lost: {missing}")
        problems += [f"{where}: {p}" for p in saga_problems(store, saga_id, CRASH_STEPS,
                                                            ledger.effects())]
    finally:
        store.close()
        ledger.close()
    return problems


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("saga", ["crash-ok", "crash-comp"])
def test_sigkill_at_every_boundary_then_restart_finishes(
    backend: str, saga: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    points = kill_points(saga)

    def sqlite_case(point: KillPoint) -> list[str]:
        d = tmp_path / point.name
        d.mkdir()
        ledger_url = f"sqlite:///{d / 'ledger.db'}"
        _create_ledger(ledger_url)
        return _crash_and_recover(f"sqlite:///{d / 'saga.db'}", ledger_url, saga, point,
                                  f"{saga}-{point.name}")

    with ThreadPoolExecutor(4) as pool:
        if backend == "sqlite":
            results = list(pool.map(sqlite_case, points))
        else:
            url = str(request.getfixturevalue("postgres_url"))  # a database of its own
            _create_ledger(url)
            results = list(pool.map(
                lambda p: _crash_and_recover(url, url, saga, p, f"{saga}-{p.name}"), points
            ))
    problems = [p for r in results for p in r]
    assert not problems, "\n".join(problems)


def test_sigkill_while_a_step_runs_then_a_new_process_finishes(tmp_path: Path) -> None:
    """Issue 2: kill a coordinator from outside mid-step; a new process completes the saga."""
    url = f"sqlite:///{tmp_path / 'saga.db'}"
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    _create_ledger(ledger_url)
    marker = tmp_path / "b-is-running"
    common = ["--url", url, "--ledger", ledger_url, "--saga", "crash-ok", "--id", "order-7",
              "--lease", "1.0"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.procs.crash_worker", *common,
         "--block-in", "b", "--marker", str(marker)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT
        while not marker.exists():
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "step b never started"
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(CHILD_TIMEOUT) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()

    with EventStore(url) as store:
        before = store.load("order-7")
        assert open_attempts(before) == {("do", "b", 1)}
        assert read_view(store, "order-7").status is SagaStatus.RUNNING

    started = time.monotonic()
    restart = _child([*common, "--mode", "run"])
    assert restart.returncode == 0, restart.stderr
    assert restart.stdout.strip() == "completed"
    assert time.monotonic() - started < 30.0

    ledger = Ledger(ledger_url)
    with EventStore(url) as store:
        history = store.load("order-7")
        lost = [e for e in history if e.type == "StepAttemptFailed"]
        assert [(e.data["step"], e.data["attempt"], e.data["lost"], e.data["retried"])
                for e in lost] == [("b", 1, True, True)]
        assert [e.data["step"] for e in history if e.type == "StepSucceeded"] == ["a", "b", "c"]
        view = read_view(store, "order-7")
        assert view.steps["b"].attempts == 2
        assert view.steps["b"].in_doubt
        assert {e.writer for e in history[:len(before)]} != {e.writer for e in history[len(before):]}
        assert saga_problems(store, "order-7", CRASH_STEPS, ledger.effects()) == []
    ledger.close()

"""Torture: many worker processes, random step failures, a killer, and a paused worker.

Worker processes (``tests.procs.worker``) drive sagas whose steps fail at
random (transient and permanent, drawn from a seed) and write their effects
into a participant ledger keyed by idempotency key. Meanwhile a killer
SIGKILLs a random worker every half second and starts a new one, one worker
is SIGSTOPped past its lease and then resumed, and a few poison sagas kill
their worker on every attempt. Afterwards every saga must be terminal and
its log and the ledger must show the guarantees.

The pytest version is small. The full run is a script::

    python -m tests.test_torture --sagas 500 --workers 4            # PostgreSQL
    python -m tests.test_torture --backend sqlite --sagas 200 --workers 3

``TORTURE_SEED`` (or ``--seed``) replays a run's faults.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pytest

from saga import Coordinator, EventStore, SagaStatus, StoredEvent
from saga._engine.reading import view as read_view

from .procs.invariants import ledger_problems, log_problems, lost_attempts, saga_problems
from .procs.ledger import Effect, Ledger
from .procs.sagas import TORTURE_STEPS, torture_saga

ROOT = Path(__file__).resolve().parent.parent
KILL_EVERY = 0.5
TERMINAL = (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED)


def seed_from_env() -> int:
    """``$TORTURE_SEED``, else a fresh random seed."""
    value = os.environ.get("TORTURE_SEED")
    return int(value) if value else random.SystemRandom().randrange(2**32)


def plans(seed: int, n: int) -> dict[str, dict[str, Any]]:
    """Each saga's input: which step fails for good, which one is poison, how flaky calls are."""
    rng = random.Random(seed)
    n_poison = max(2, n // 40)
    out = []
    n_slow = max(4, n // 25)
    for i in range(n):
        poison = rng.choice(TORTURE_STEPS) if i < n_poison else None
        slow = n_poison <= i < n_poison + n_slow
        fail = None
        if poison is None and not slow and rng.random() < 0.25:
            fail = rng.choice(TORTURE_STEPS)
        # slow steps outlast the lease: their worker must keep renewing it, and the
        # pauser stops a worker in the middle of one
        think = 1.5 if slow else 0.01
        out.append({"seed": seed, "p": 0.15, "fail": fail, "poison": poison, "think": think})
    rng.shuffle(out)
    return {f"torture-{i:04d}": plan for i, plan in enumerate(out)}


@dataclass
class Report:
    """What a torture run did and what it found."""

    seed: int
    sagas: int
    workers: int
    elapsed: float = 0.0
    finished: bool = False
    statuses: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    deaths: int = 0  # workers that died by themselves (poison steps)
    spawned: int = 0
    paused_for: float = 0.0
    paused_mid_step: bool = False
    paused_notes: list[str] = field(default_factory=list)  # its log about leases, once resumed
    lost: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"torture seed={self.seed}: {self.sagas} sagas, {self.workers} workers, "
            f"{self.elapsed:.1f}s, {'all terminal' if self.finished else 'NOT all terminal'} "
            f"({statuses}); {self.kills} workers SIGKILLed by the killer, {self.deaths} by poison "
            f"steps, {self.spawned} started; one paused {self.paused_for:.1f}s"
            f"{' in the middle of a step' if self.paused_mid_step else ''} (its lease notes "
            f"after resuming: {len(self.paused_notes)}); {self.lost} attempts recorded "
            f"lost; {len(self.problems)} problems"
        )


class Workers:
    """The worker processes, started and killed on demand."""

    def __init__(self, url: str, ledger_url: str, *, lease: float, logs: Path) -> None:
        self.args = ["--url", url, "--ledger", ledger_url, "--lease", str(lease)]
        self.logs = logs
        self.activity = logs / "activity"
        self.activity.mkdir(exist_ok=True)
        self.env = {**os.environ, "TORTURE_ACTIVITY": str(self.activity)}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log_of: dict[int, Path] = {}
        self._files: list[TextIO] = []
        self.spawned = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        path = self.logs / f"worker-{self.spawned:03d}.log"
        f = path.open("w")
        self._files.append(f)
        p = subprocess.Popen(
            [sys.executable, "-m", "tests.procs.worker", *self.args],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=f, env=self.env,
        )
        self.procs.append(p)
        self.log_of[p.pid] = path
        self.spawned += 1
        return p

    def reap(self) -> int:
        """Forget workers that died; how many there were."""
        dead = [p for p in self.procs if p.poll() is not None]
        for p in dead:
            self._forget(p)
        return len(dead)

    def kill(self, p: subprocess.Popen[bytes]) -> None:
        p.send_signal(signal.SIGKILL)
        p.wait()
        self._forget(p)

    def _forget(self, p: subprocess.Popen[bytes]) -> None:
        self.procs.remove(p)
        (self.activity / str(p.pid)).unlink(missing_ok=True)  # it died in a slow step

    def stop_all(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGCONT)
            p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        for f in self._files:
            f.close()


def _terminal_count(store: EventStore, n: int) -> int:
    return sum(len(store.find(status=s, name="torture", limit=n)) for s in TERMINAL)


def torture(
    url: str,
    ledger_url: str,
    *,
    sagas: int,
    workers: int,
    seed: int,
    workdir: Path,
    lease: float = 1.0,
    time_limit: float = 120.0,
    chaos_fraction: float = 0.6,
    say: Callable[[str], None] = print,
) -> Report:
    """Run the torture on a store and a ledger; the report lists every broken guarantee."""
    say(f"torture seed={seed} (replay with TORTURE_SEED={seed})")
    report = Report(seed=seed, sagas=sagas, workers=workers)
    rng = random.Random(seed)
    ledger = Ledger(ledger_url)
    ledger.create_tables()
    store = EventStore(url)
    inputs = plans(seed, sagas)
    starter = Coordinator(store, sagas=[torture_saga(ledger)])
    # half are waiting when the workers start; the rest arrive while they work
    backlog = list(inputs.items())
    for saga_id, plan in backlog[: sagas // 2]:
        starter.start("torture", plan, saga_id=saga_id)
    backlog = backlog[sagas // 2:]

    pool = Workers(url, ledger_url, lease=lease, logs=workdir)
    t0 = time.monotonic()
    chaos_until = t0 + time_limit * chaos_fraction
    next_kill = t0 + KILL_EVERY
    pause_at = t0 + 1.0
    paused: subprocess.Popen[bytes] | None = None
    paused_at = resume_at = 0.0
    paused_log: tuple[Path, int] | None = None
    try:
        for _ in range(workers):
            pool.spawn()
        next_check = 0.0
        while True:
            now = time.monotonic()
            if now >= next_check:
                if _terminal_count(store, sagas) == sagas:
                    report.finished = True
                    break
                next_check = now + 0.25
            if now - t0 > time_limit:
                break
            for saga_id, plan in backlog[:5]:
                starter.start("torture", plan, saga_id=saga_id)
            backlog = backlog[5:]
            report.deaths += pool.reap()
            while len(pool.procs) < workers:
                pool.spawn()
            if paused is not None and now >= resume_at:
                paused.send_signal(signal.SIGCONT)
                report.paused_for = now - paused_at
                paused = None
            if now < chaos_until and now >= next_kill:
                victims = [p for p in pool.procs if p is not paused and p.poll() is None]
                if victims:
                    pool.kill(rng.choice(victims))
                    report.kills += 1
                    pool.spawn()
                next_kill = now + KILL_EVERY
            if paused is None and paused_log is None and now >= pause_at:
                # prefer a worker in the middle of a slow step; late in the chaos, any
                busy = {int(m.name) for m in pool.activity.iterdir()}
                victims = [p for p in pool.procs if p.poll() is None and p.pid in busy]
                if not victims and now >= chaos_until - 2 * lease:
                    victims = [p for p in pool.procs if p.poll() is None]
                if victims:
                    paused = rng.choice(victims)
                    paused.send_signal(signal.SIGSTOP)
                    report.paused_mid_step = paused.pid in busy
                    paused_at, resume_at = now, now + lease * 2.5
                    log_path = pool.log_of[paused.pid]
                    paused_log = (log_path, len(log_path.read_text().splitlines()))
            time.sleep(0.05)
    finally:
        pool.stop_all()
    report.elapsed = time.monotonic() - t0
    report.spawned = pool.spawned
    if paused_log is not None:
        lines = paused_log[0].read_text().splitlines()[paused_log[1]:]
        report.paused_notes = [line for line in lines if "lease" in line]

    effects = ledger.effects()
    for saga_id, plan in inputs.items():
        view = read_view(store, saga_id)
        report.statuses[view.status.value] += 1
        history = store.load(saga_id)
        report.lost += len(lost_attempts(history))
        if not report.finished and view.status not in TERMINAL:
            report.problems += log_problems(history)
            continue
        report.problems += saga_problems(store, saga_id, TORTURE_STEPS, effects)
        bad_step = plan["fail"] or plan["poison"]
        if bad_step is not None and view.status is not SagaStatus.COMPENSATED:
            report.problems.append(f"{saga_id}: {bad_step} cannot succeed, yet it ended "
                                   f"{view.status.value}")
        if plan["poison"] is not None:
            # every attempt of a poison step either failed transiently before its effect
            # or killed its worker, and then must be recorded as lost
            outcomes = [e for e in history if e.type in ("StepAttemptFailed", "StepSucceeded")
                        and e.data["step"] == plan["poison"]]
            if any(e.type == "StepSucceeded" or not (e.data["lost"] or e.data["error_type"]
                                                      .endswith("TransientFault"))
                   for e in outcomes):
                report.problems.append(f"{saga_id}: a poison attempt ended otherwise than "
                                       "lost or failed transiently")
    starter.close()
    store.close()
    ledger.close()
    say(report.summary())
    return report


def _assert_clean(report: Report) -> None:
    head = report.summary()
    assert report.finished, head + "\n" + "\n".join(report.problems[:50])
    assert not report.problems, head + "\n" + "\n".join(report.problems[:50])
    assert report.kills >= 3, head
    assert report.paused_for > 0 and report.paused_mid_step, head
    assert report.statuses[SagaStatus.COMPLETED.value] > 0, head
    assert report.statuses[SagaStatus.COMPENSATED.value] > 0, head
    assert report.lost > 0, head


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.xdist_group("torture")  # one torture at a time, so their timing stays their own
def test_torture_postgres(postgres_url: str, tmp_path: Path) -> None:
    report = torture(postgres_url, postgres_url, sagas=60, workers=3, seed=seed_from_env(),
                     workdir=tmp_path, time_limit=90.0, chaos_fraction=0.25)
    _assert_clean(report)


@pytest.mark.slow
@pytest.mark.xdist_group("torture")
def test_torture_sqlite_several_processes(tmp_path: Path) -> None:
    report = torture(f"sqlite:///{tmp_path / 'saga.db'}", f"sqlite:///{tmp_path / 'ledger.db'}",
                     sagas=40, workers=3, seed=seed_from_env(), workdir=tmp_path,
                     time_limit=90.0, chaos_fraction=0.25)
    _assert_clean(report)


def _log(*entries: tuple[str, dict[str, Any]], seqs: list[int] | None = None) -> list[StoredEvent]:
    at = datetime.now(UTC)
    return [
        StoredEvent(saga_id="s", seq=seq, type=t, data=d, recorded_at=at)
        for seq, (t, d) in zip(seqs or range(1, len(entries) + 1), entries, strict=True)
    ]


def test_the_checks_catch_broken_logs_and_ledgers() -> None:
    """The torture's verdicts mean something: each broken guarantee is reported."""
    a1 = {"step": "s1", "attempt": 1}
    good = [("SagaStarted", {}), ("StepAttemptStarted", a1), ("StepSucceeded", a1),
            ("SagaCompleted", {})]
    assert log_problems(_log(*good)) == []
    assert "not contiguous" in log_problems(_log(*good, seqs=[1, 2, 4, 5]))[0]
    assert "events after the terminal" in log_problems(_log(*good, ("StepAttemptStarted", a1)))[0]
    assert "not terminal" in log_problems(_log(*good[:3]))[0]
    assert "no outcome" in log_problems(_log(*good[:2], ("SagaCompleted", {})))[0]
    late_start = [("SagaStarted", {}), ("CompensationStarted", {}),
                  ("StepAttemptStarted", a1), ("StepAttemptFailed", {**a1, "lost": True}),
                  ("SagaCompensated", {})]
    assert "after CompensationStarted" in log_problems(_log(*late_start))[0]
    twice = [*good[:3], ("StepAttemptStarted", a1), ("StepSucceeded", a1), ("SagaCompleted", {})]
    assert any("started twice" in p for p in log_problems(_log(*twice)))

    done = Effect("s", "s1", "done", 1, 0)
    undone = Effect("s", "s1", "undone", 1, 1)
    completed, compensated = SagaStatus.COMPLETED, SagaStatus.COMPENSATED
    assert ledger_problems("s", completed, ["s1"], {("s", "s1"): done}) == []
    assert ledger_problems("s", completed, ["s1"], {})
    assert ledger_problems("s", completed, ["s1"], {("s", "s1"): undone})
    assert ledger_problems("s", compensated, ["s1"], {("s", "s1"): undone}, succeeded=["s1"]) == []
    assert ledger_problems("s", compensated, ["s1"], {("s", "s1"): done})
    assert ledger_problems("s", compensated, ["s1"], {}, succeeded=["s1"])
    assert ledger_problems("s", SagaStatus.FAILED, ["s1"], {("s", "s1"): undone})


@contextmanager
def _backend(name: str, workdir: Path) -> Iterator[tuple[str, str]]:
    if name == "sqlite":
        yield f"sqlite:///{workdir / 'saga.db'}", f"sqlite:///{workdir / 'ledger.db'}"
        return
    from .procs.pg import temporary_database

    with temporary_database("torture") as url:
        yield url, url


def main(argv: list[str] | None = None) -> int:
    """The full torture run from the command line; exit status 1 if a guarantee broke."""
    p = argparse.ArgumentParser(prog="python -m tests.test_torture", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sagas", type=int, default=500)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--lease", type=float, default=1.0)
    p.add_argument("--time-limit", type=float, default=600.0)
    p.add_argument("--chaos-seconds", type=float, default=60.0)
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else seed_from_env()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="torture-")))
        url, ledger_url = stack.enter_context(_backend(args.backend, workdir))
        report = torture(url, ledger_url, sagas=args.sagas, workers=args.workers, seed=seed,
                         workdir=workdir, lease=args.lease, time_limit=args.time_limit,
                         chaos_fraction=min(args.chaos_seconds / args.time_limit, 1.0))
        for note in report.paused_notes[:5]:
            print(f"paused worker: {note}")
        for problem in report.problems[:200]:
            print(problem)
    return 0 if report.finished and not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())

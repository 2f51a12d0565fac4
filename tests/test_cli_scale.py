"""``saga show`` and ``saga history --json`` stream a long log: memory stays flat."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from saga import EventStore, SagaStatus
from saga import events as ev

from .cli_run import SAGA

FAILURES = 50_000
STEP = "reserve_stock"

# Runs a command and prints its peak resident memory in KiB (the only child of this process).
_PEAK = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "assert done.returncode == 0, done\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def build(url: str, saga_id: str, failures: int) -> int:
    """A saga whose first step failed ``failures`` times the same way, then was compensated;
    appended through the store, a thousand events at a time. Returns its number of events."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with EventStore(url) as store:
        started = ev.SagaStarted(name="place-order", version=1, input={"sku": "a"}, at=t0)
        store.create(saga_id, [started], name="place-order", version=1,
                     status=SagaStatus.RUNNING, wake_at=None, now=t0)
        seq, batch = 1, list[ev.Event]()
        for n in range(1, failures + 1):
            at = t0 + timedelta(seconds=n)
            last = n == failures
            batch.append(ev.StepAttemptStarted(step=STEP, attempt=n, at=at))
            batch.append(ev.StepAttemptFailed(
                step=STEP, attempt=n, at=at, error_type="ValueError", message="stock service said no",
                retried=not last, next_attempt_at=None if last else at + timedelta(seconds=1),
                gave_up="attempts" if last else None,
            ))
            if last:
                reason = f"step {STEP} failed: ValueError: stock service said no"
                batch += [ev.StepFailed(step=STEP, reason=reason, at=at),
                          ev.CompensationStarted(reason=reason, step=STEP, at=at),
                          ev.SagaCompensated(at=at)]
            if len(batch) >= 1000 or last:
                status = SagaStatus.COMPENSATED if last else SagaStatus.RUNNING
                store.append(saga_id, seq, batch, status=status, wake_at=None, now=at)
                seq += len(batch)
                batch = []
    return seq


def peak_kib(*args: str) -> int:
    """Peak resident memory of ``saga ARGS``, in KiB."""
    out = subprocess.run([sys.executable, "-c", _PEAK, SAGA, *args], capture_output=True, text=True,
                         timeout=300, check=True)
    return int(out.stdout)


@pytest.fixture(scope="module")
def long_log(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file with one saga of 100,004 events (``long``) and one of 5 (``short``)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('scale') / 'long.db'}"
    assert build(url, "long", FAILURES) == 2 * FAILURES + 4
    assert build(url, "short", 1) == 6
    return url


@pytest.mark.parametrize("command", [("show",), ("history", "--json"), ("history",)],
                         ids=["show", "history-json", "history"])
def test_memory_stays_flat_on_a_long_log(long_log: str, command: tuple[str, ...]) -> None:
    name, *options = command
    small = peak_kib("--db", long_log, name, "short", *options)
    start = time.monotonic()
    large = peak_kib("--db", long_log, name, "long", *options)
    elapsed = time.monotonic() - start
    # Loading 100,004 events at once takes hundreds of MiB; a page of them, a few.
    assert large - small < 40 * 1024, (small, large)
    print(f"{name} {' '.join(options)}: peak {small // 1024} MiB on 6 events, "
          f"{large // 1024} MiB on 100,004 events, {elapsed:.1f}s")


def test_show_summarises_a_long_run_of_identical_failures(long_log: str) -> None:
    shown = subprocess.run([SAGA, "--db", long_log, "show", "long"], capture_output=True, text=True,
                           timeout=300, check=True).stdout
    lines = shown.splitlines()
    assert len(lines) < 20, shown
    assert lines[0] == "saga long  (place-order v1)  compensated"
    assert any(line.endswith(
        f"{STEP}  attempts 3\N{EN DASH}49,998 failed the same way (ValueError: stock service said no)")
        for line in lines), shown
    for n in (1, 2, 49_999):
        assert f"attempt {n} failed: ValueError: stock service said no; next attempt in 1.000s" in shown
    assert "attempt 50000 failed: ValueError: stock service said no; gave up (attempts)" in shown


def test_history_json_streams_every_event_in_order(long_log: str) -> None:
    out = subprocess.run([SAGA, "--db", long_log, "history", "long", "--json"], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    seqs = [json.loads(line)["seq"] for line in out.splitlines()]
    assert seqs == list(range(1, 2 * FAILURES + 5))


@pytest.mark.postgres
def test_memory_stays_flat_on_a_long_log_on_postgres(postgres_url: str) -> None:
    build(postgres_url, "long", FAILURES)
    build(postgres_url, "short", 1)
    for command in (("show",), ("history", "--json")):
        name, *options = command
        small = peak_kib("--db", postgres_url, name, "short", *options)
        large = peak_kib("--db", postgres_url, name, "long", *options)
        assert large - small < 40 * 1024, (command, small, large)

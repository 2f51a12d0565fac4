"""``saga show`` and ``saga history --json`` stream a long log: memory stays flat (the memory of
a real process of the command, measured by its parent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from saga import EventStore, SagaStatus
from saga import events as ev
from saga.store.loading import BulkSaga, write_sagas
from saga.store.sql import SqlEventStore

from .cli_run import SAGA

pytestmark = pytest.mark.xdist_group("cli_scale")  # one worker builds the module's log, once

FAILURES = 25_000  # a saga of 50,004 events: read whole, it takes over 90 MB
STEP = "reserve_stock"

# Runs a command, its stdout into the file named first, and prints its peak resident memory in KiB
# (the only child of this process).
_PEAK = (
    "import resource, subprocess, sys\n"
    "with open(sys.argv[1], 'wb') as out:\n"
    "    done = subprocess.run(sys.argv[2:], stdout=out)\n"
    "assert done.returncode == 0, done\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def build(url: str, saga_id: str, failures: int) -> int:
    """A saga whose first step failed ``failures`` times the same way, then was compensated;
    written in bulk (hashed and indexed as appends would). Returns its number of events."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    events: list[ev.Event] = [ev.SagaStarted(name="place-order", version=1, input={"sku": "a"}, at=t0)]
    for n in range(1, failures + 1):
        at = t0 + timedelta(seconds=n)
        last = n == failures
        events.append(ev.StepAttemptStarted(step=STEP, attempt=n, at=at))
        events.append(ev.StepAttemptFailed(
            step=STEP, attempt=n, at=at, error_type="ValueError", message="stock service said no",
            retried=not last, next_attempt_at=None if last else at + timedelta(seconds=1),
            gave_up="attempts" if last else None,
        ))
        if last:
            reason = f"step {STEP} failed: ValueError: stock service said no"
            events += [ev.StepFailed(step=STEP, reason=reason, at=at),
                       ev.CompensationStarted(reason=reason, step=STEP, at=at),
                       ev.SagaCompensated(at=at)]
    with EventStore(url) as store:
        assert isinstance(store, SqlEventStore)
        write_sagas(store, [BulkSaga(saga_id, "place-order", 1, SagaStatus.COMPENSATED, events)])
        assert store.summary(saga_id).last_seq == len(events)
    return len(events)


def peak_kib(*args: str, out: Path | None = None) -> int:
    """Peak resident memory of ``saga ARGS``, a real process, in KiB; its stdout is written to
    ``out`` (else nowhere)."""
    done = subprocess.run([sys.executable, "-c", _PEAK, str(out or os.devnull), SAGA, *args],
                          capture_output=True, text=True, timeout=300, check=True)
    return int(done.stdout)


@pytest.fixture(scope="module")
def long_log(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file with one saga of 50,004 events (``long``) and one of 5 (``short``)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('scale') / 'long.db'}"
    assert build(url, "long", FAILURES) == 2 * FAILURES + 4
    assert build(url, "short", 1) == 6
    return url


@pytest.fixture(scope="module")
def measured(long_log: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Callable[..., tuple[int, str, float]]:
    """``saga COMMAND SAGA_ID OPTIONS`` on the long log as a real process: its peak memory in KiB,
    its stdout and its time; each command is run once for the module's tests."""
    done: dict[tuple[str, ...], tuple[int, str, float]] = {}
    directory = tmp_path_factory.mktemp("outputs")

    def measured(name: str, saga_id: str, *options: str) -> tuple[int, str, float]:
        key = (name, saga_id, *options)
        if key not in done:
            out = directory / f"{len(done)}.out"
            start = time.monotonic()
            peak = peak_kib("--db", long_log, *key, out=out)
            done[key] = (peak, out.read_text(), time.monotonic() - start)
        return done[key]

    return measured


@pytest.mark.parametrize("command", [("show",), ("history", "--json"), ("history",)],
                         ids=["show", "history-json", "history"])
def test_memory_stays_flat_on_a_long_log(measured: Callable[..., tuple[int, str, float]],
                                         command: tuple[str, ...]) -> None:
    name, *options = command
    small, _, _ = measured(name, "short", *options)
    large, _, elapsed = measured(name, "long", *options)
    # Loading 50,004 events at once takes hundreds of MiB; a page of them, a few.
    assert large - small < 40 * 1024, (small, large)
    print(f"{name} {' '.join(options)}: peak {small // 1024} MiB on 6 events, "
          f"{large // 1024} MiB on {2 * FAILURES + 4:,} events, {elapsed:.1f}s")


def test_show_summarises_a_long_run_of_identical_failures(
    measured: Callable[..., tuple[int, str, float]],
) -> None:
    _, shown, _ = measured("show", "long")
    lines = shown.splitlines()
    assert len(lines) < 20, shown
    assert lines[0] == "saga long  (place-order v1)  compensated"
    assert any(line.endswith(
        f"{STEP}  attempts 3\N{EN DASH}{FAILURES - 2:,} failed the same way "
        "(ValueError: stock service said no)")
        for line in lines), shown
    for n in (1, 2, FAILURES - 1):
        assert f"attempt {n} failed: ValueError: stock service said no; next attempt in 1.000s" in shown
    assert f"attempt {FAILURES} failed: ValueError: stock service said no; gave up (attempts)" in shown


def test_history_json_streams_every_event_in_order(
    measured: Callable[..., tuple[int, str, float]],
) -> None:
    _, out, _ = measured("history", "long", "--json")
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

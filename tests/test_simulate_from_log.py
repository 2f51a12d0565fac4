"""``saga simulate --from-log``: the failure rates and durations of a log written by real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saga import Coordinator, EventStore, SagaStatus
from tests.cli_run import error_line, ok
from tests.fixtures import faulty_sagas as target

pytestmark = pytest.mark.xdist_group("simulate_from_log")  # one worker builds the module's log, once

TARGET = "tests.fixtures.faulty_sagas"
REAL_RUNS = 600


@pytest.fixture(scope="module")
def log_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file holding ``REAL_RUNS`` checkouts run by the real coordinator."""
    url = f"sqlite:///{tmp_path_factory.mktemp('log') / 'production.db'}"
    with EventStore(url) as store, Coordinator(store, [target.checkout], clock=target.CLOCK) as c:
        ends = [c.execute("checkout", None, saga_id=f"order-{i}").status for i in range(REAL_RUNS)]
    assert SagaStatus.COMPLETED in ends and SagaStatus.COMPENSATED in ends
    return url


def test_from_log_recovers_the_injected_failure_rates(log_url: str) -> None:
    out = json.loads(ok("--db", log_url, "simulate", TARGET, "checkout", "--runs", "3000",
                        "--seed", "5", "--from-log", "--json"))
    assert set(out) == {"runs", "seed", "saga", "steps"}
    for step, rate in (("reserve", target.RESERVE_RATE), ("charge", target.CHARGE_RATE)):
        read = out["steps"][step]["from_log"]
        low, high = read["fail"]["ci"]
        assert low <= rate <= high, (step, read["fail"])
        assert read["fail"]["value"] == read["failures"] / read["fail"]["n"]
        assert read["failures"] + read["successes"] == read["fail"]["n"] == read["attempts"]
        # the simulation ran with the rate the log gave
        predicted = out["steps"][step]["predicted"]
        assert predicted["attempt_failure"] == pytest.approx(read["fail"]["value"])
    # reserve's attempts took 0.25 s each in the log, and so they do in the simulation
    reserve = out["steps"]["reserve"]
    assert reserve["from_log"]["durations"]["p50"] == pytest.approx(target.RESERVE_SECONDS)
    assert reserve["measured"]["p50"]["value"] == pytest.approx(target.RESERVE_SECONDS, abs=1e-5)
    assert out["steps"]["charge"]["from_log"]["durations"]["p99"] == 0.0


def test_a_flag_wins_over_the_log_for_its_step(log_url: str) -> None:
    out = json.loads(ok("--db", log_url, "simulate", TARGET, "checkout", "--runs", "200",
                        "--from-log", "--fail", "reserve=0.5", "--policy", "reserve=fixed:1,5",
                        "--json"))
    reserve = out["steps"]["reserve"]["predicted"]
    assert reserve["attempt_failure"] == 0.5
    assert reserve["completed"] == pytest.approx(1 - 0.5**5)
    charge = out["steps"]["charge"]
    assert charge["predicted"]["attempt_failure"] == pytest.approx(
        charge["from_log"]["fail"]["value"])


def test_the_table_says_what_it_read(log_url: str) -> None:
    table = ok("--db", log_url, "simulate", TARGET, "checkout", "--runs", "100", "--from-log",
               "--since", "2000-01-01")
    assert table.startswith(f"from the log at {log_url} since 2000-01-01T00:00:00+00:00:\n")
    assert "  reserve: " in table and " attempts, fails 0." in table
    assert "checkout: 100 runs, seed 0" in table


def test_a_log_without_the_saga_or_a_missing_database_is_refused(
    log_url: str, tmp_path: Path
) -> None:
    assert error_line("--db", log_url, "simulate", TARGET, "checkout", "--runs", "5",
                      "--from-log", "--since", "2999-01-01") == (
        f"saga: error: --from-log: the log at {log_url} has no attempts of saga 'checkout' "
        "since 2999-01-01T00:00:00+00:00"
    )
    missing = tmp_path / "none.db"
    assert "no database at" in error_line("--db", f"sqlite:///{missing}", "simulate", TARGET,
                                          "checkout", "--runs", "5", "--from-log")
    assert not missing.exists()
    assert error_line("--db", log_url, "simulate", TARGET, "checkout", "--runs", "5",
                      "--since", "2h") == "saga: error: --since needs --from-log"
    assert error_line("--db", log_url, "simulate", TARGET, "checkout", "--runs", "5",
                      "--from-log", "--since", "soon").startswith("saga: error: --since: expected ")
    assert error_line("--db", "memory://", "simulate", TARGET, "checkout", "--runs", "5",
                      "--from-log") == (
        "saga: error: no saga log in memory://: a memory store's log lives in the memory of the "
        "process that writes it, and a reader cannot see it")

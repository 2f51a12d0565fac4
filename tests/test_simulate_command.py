"""The ``saga simulate`` flags as the command line will parse them, and what it prints."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import pytest

from saga import InvalidInput, TargetError
from saga.cli.command import load_targets
from saga.cli.simulate import add_arguments, choose, run
from tests.cli_run import ROOT, SAGA, error_line, ok

TARGET = "tests.fixtures.simulate_sagas"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="saga simulate")
    add_arguments(p)
    return p.parse_args(argv)


def test_json_output_from_the_contracted_command_line(tmp_path: Path) -> None:
    args = parse([TARGET, "trip", "--runs", "40", "--seed", "3",
                  "--fail", "book_hotel=0.4", "--fail", "charge_card=0.1",
                  "--latency", "book_flight=exp:0.3", "--replicas", "book_hotel=2",
                  "--policy", "book_hotel=fixed:0.5,4", "--timeout", "book_flight=2",
                  "--json", "--plot", str(tmp_path / "trip.png")])
    saga = choose(load_targets([args.target]), args.name, args.target)
    out = json.loads(run(saga, args))
    assert set(out) == {"runs", "seed", "saga", "steps"}
    assert (out["runs"], out["seed"]) == (40, 3)
    assert out["steps"]["book_hotel"]["predicted"]["completed"] == pytest.approx(1 - 0.4 ** (2 * 4))
    assert (tmp_path / "trip.png").stat().st_size > 0
    # without --json: the table
    args = parse([TARGET, "trip", "--runs", "10", "--fail", "book_hotel=0.4"])
    table = run(saga, args)
    assert table.startswith("trip: 10 runs, seed 0")
    assert "step book_hotel" in table and "95% interval" in table


def test_bad_flags_stop_before_anything_runs(tmp_path: Path) -> None:
    saga = choose(load_targets([TARGET]), "trip", TARGET)
    with pytest.raises(InvalidInput, match=r"^--latency 'book_flight=exp:1,2': expected 1 number"):
        run(saga, parse([TARGET, "trip", "--runs", "5", "--latency", "book_flight=exp:1,2"]))
    with pytest.raises(InvalidInput, match=r"must end in \.png"):
        run(saga, parse([TARGET, "trip", "--runs", "5", "--plot", str(tmp_path / "x.svg")]))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TargetError, match=r"unknown saga 'nope' in .* \(found: exponential, "):
        choose(load_targets([TARGET]), "nope", TARGET)


@pytest.mark.parametrize("argv", [
    [TARGET, "trip"],
    [TARGET, "trip", "--runs", "0"],
    [TARGET, "trip", "--runs", "many"],
    [TARGET, "trip", "--runs", "5", "--seed", "x"],
])
def test_malformed_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2


# -- through the ``saga`` command ------------------------------------------------------------


def test_saga_simulate_prints_the_table_and_writes_the_plot(tmp_path: Path) -> None:
    png = tmp_path / "trip.png"
    table = ok("simulate", TARGET, "trip", "--runs", "300", "--seed", "2",
               "--fail", "book_hotel=0.3", "--policy", "book_hotel=fixed:1,3", "--plot", str(png))
    assert table.startswith("trip: 300 runs, seed 2")
    assert "step book_hotel: reached in 300 runs; each attempt fails with 0.3" in table
    assert png.read_bytes().startswith(b"\x89PNG")
    again = ok("simulate", TARGET, "trip", "--runs", "300", "--seed", "2", "--json",
               "--fail", "book_hotel=0.3", "--policy", "book_hotel=fixed:1,3")
    assert json.loads(again)["saga"]["predicted"]["completed"] == pytest.approx(1 - 0.3**3)


@pytest.mark.parametrize(("argv", "line"), [
    (["--fail", "nope=0.1"],
     "saga: error: --fail: saga 'trip' has no step 'nope' (its steps: book_flight, book_hotel, "
     "charge_card)"),
    (["--fail", "book_hotel=2"], "saga: error: --fail 'book_hotel=2': P must be between 0 and 1, got 2"),
    (["--policy", "book_hotel=fixed:1"],
     "saga: error: --policy 'book_hotel=fixed:1': expected 2 numbers (DELAY,ATTEMPTS), got 1"),
    (["--plot", "{tmp}/trip.svg"], "saga: error: --plot '{tmp}/trip.svg': the file name must end in .png"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, argv: list[str], line: str) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert error_line("simulate", TARGET, "trip", "--runs", "5", *argv) == \
        line.replace("{tmp}", str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    assert "unknown saga 'nope'" in error_line("simulate", TARGET, "nope", "--runs", "5")


def test_without_matplotlib_plot_says_what_to_install(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
    env = {k: v for k, v in os.environ.items() if k != "SAGA_DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(shadow.parent), str(ROOT)])
    png = tmp_path / "trip.png"
    result = subprocess.run([SAGA, "simulate", TARGET, "trip", "--runs", "5", "--plot", str(png)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 1
    assert result.stderr == (
        "saga: error: --plot needs matplotlib: pip install 'saga-coordinator[plot]'\n")
    assert result.stdout == "" and not png.exists()

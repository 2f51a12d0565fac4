"""The ``saga simulate`` flags as the command line will parse them, and what it prints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from saga import InvalidInput, TargetError
from saga.cli import load_targets
from saga.simulate import add_arguments, choose, run

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

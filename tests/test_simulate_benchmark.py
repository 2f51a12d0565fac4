"""The simulator's benchmark still runs (with a tiny count; figures are not checked)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "simulate_throughput.py"


def test_simulate_throughput_runs(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_simulate_throughput", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main(["--runs", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("20 sagas of 3 steps")
    assert "sagas/s" in out and "10000 runs (est.)" in out

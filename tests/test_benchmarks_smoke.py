"""The benchmarks still run: each one's main with very small counts (figures are not checked)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str) -> ModuleType:
    """Import a benchmark script by file name (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_sqlite_throughput_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load("sqlite_throughput")
    assert bench.main(["--sagas", "5", "--warmup", "1", "--raw", "20", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "commits/s" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert set(lines) == {"execute", "start+run"}
    # 3 steps: execute commits 4 times (create with the first start, 2 handovers, the finish),
    # start+run once more (start on its own).
    assert float(lines["execute"][4]) == pytest.approx(4 / 3, abs=0.001)
    assert float(lines["start+run"][4]) == pytest.approx(5 / 3, abs=0.001)


@pytest.mark.postgres
def test_postgres_throughput_runs(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load("postgres_throughput")
    url = os.environ.get("SAGA_TEST_POSTGRES_URL") or bench.DEFAULT_URL
    assert bench.main([
        "--url", url, "--database", f"saga_bench_smoke_{os.getpid()}",
        "--one", "3", "--warmup", "1", "--many", "6", "--workers", "1", "--concurrency", "3",
        "--recover", "4", "--lease", "0.5", "--raw", "20",
    ]) == 0
    out = capsys.readouterr().out
    for label in ("raw insert+commit", "raw 100-row batches", "one at a time",
                  "1 worker process", "recovery of 4 sagas"):
        assert label in out, out


def test_against_commit_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = BENCHMARKS.parent
    probe = subprocess.run(["git", "-C", str(root), "cat-file", "-e", "f84b104^{commit}"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("the checkout's history does not reach f84b104")
    bench = load("against_commit")
    assert bench.main(["--only", "sqlite-one", "--pairs", "1", "--one", "3", "--warmup", "1",
                       "--raw", "20", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    commits = dict(re.findall(r"(start\+run|execute) commits/saga +([\d.]+) +[\d.]+ ", out))
    # f84b104's store, counted from outside: start+run commits 5 times a saga, execute 4 times.
    assert commits == {"start+run": "5.00", "execute": "4.00"}, out
    assert "raw commits/s" in out

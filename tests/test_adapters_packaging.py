"""The wheel ships the adapters as ``saga.adapters`` only: another distribution owns the
top-level name ``adapters``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_setuptools_config_maps_adapters_under_saga() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = config["tool"]["setuptools"]
    assert all(p == "saga" or p.startswith("saga.") for p in tool["packages"]), tool["packages"]
    assert tool["package-dir"]["saga.adapters"] == "adapters"
    assert "" not in tool["package-dir"], "a root mapping would ship top-level packages"
    assert "find" not in tool.get("packages", {}), "package discovery would find adapters/"
    extras = config["project"]["optional-dependencies"]
    assert any(r.startswith("httpx") for r in extras["http"])
    assert any(r.startswith("httpx") for r in extras["dev"])


def test_the_built_wheel_has_saga_adapters_and_no_top_level_adapters(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    for name in ("saga", "adapters", "migrations"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(project)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    [wheel] = list(out.glob("saga_coordinator-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
        zf.extractall(tmp_path / "site")
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"saga"}
    assert "saga/adapters/__init__.py" in names and "saga/adapters/http.py" in names
    assert 'Requires-Dist: httpx>=0.27; extra == "http"' in metadata

    # Installed from the wheel: saga.adapters imports, a bare `adapters` does not exist.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import saga.adapters\n"
        "assert saga.adapters.__file__.startswith(sys.argv[1]), saga.adapters.__file__\n"
        "from saga.adapters import Http, SqlParticipant, Failover, Hedge, CircuitBreaker, CircuitOpen\n"
        "from saga.adapters import Faulty, InjectedFault\n"
        "try:\n    import adapters\nexcept ModuleNotFoundError:\n    print('no top-level adapters')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "site")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no top-level adapters"

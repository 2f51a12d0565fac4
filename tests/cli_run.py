"""Running the ``saga`` command as a real process, for the command-line tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAGA = str(Path(sys.executable).with_name("saga"))


def run(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``saga ARGS`` in ``cwd`` (no ``$SAGA_DATABASE_URL``), its output captured."""
    return subprocess.run(
        [SAGA, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
        env={k: v for k, v in os.environ.items() if k != "SAGA_DATABASE_URL"},
    )


def ok(*args: str, cwd: Path = ROOT) -> str:
    """The stdout of ``saga ARGS``, which must succeed."""
    result = run(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def error_line(*args: str, cwd: Path = ROOT, code: int = 1) -> str:
    """The one line ``saga ARGS`` prints on stderr as it fails with exit ``code``."""
    result = run(*args, cwd=cwd)
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    if code == 1:
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("saga: error: ")
    return lines[-1]

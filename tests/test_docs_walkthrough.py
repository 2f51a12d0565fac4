"""The guide's failure investigation runs as written: each shell block, in order, in one directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.docs_pages import blocks, read, section

SECTION = section(read("docs/operating.md"), "## Investigating a failure")

NOT_YET: tuple[str, ...] = ()
"""Commands the walkthrough describes that this command line does not have yet: their blocks are
checked to be refused as unknown (so the test says when they arrive) instead of run."""


def _blocks() -> list[str]:
    return blocks(SECTION, "sh")


def _bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)  # where `saga` is installed
    env = {k: v for k, v in os.environ.items()
           if k not in ("SAGA_DATABASE_URL", "SAGA_ENCRYPTION_KEY", "NO_COLOR")}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_walkthrough_runs(tmp_path: Path) -> None:
    shell = _blocks()
    assert len(shell) >= 3
    state = ""  # shell variables set by earlier blocks (ID=...)
    ran = 0
    for block in shell:
        pending = [c for c in NOT_YET if c in block]
        if pending:
            for line in block.splitlines():
                command = line.split("  #")[0].strip()
                if any(c in command for c in pending) and command:
                    refused = _bash(state + command, tmp_path)
                    assert refused.returncode == 2, (
                        f"{command!r} works now: take {pending} out of NOT_YET so the walkthrough runs "
                        f"it\n{refused.stderr}")
            continue
        result = _bash(state + block, tmp_path)
        assert result.returncode == 0, f"{block}\n{result.stderr}"
        state += "".join(f"{line}\n" for line in block.splitlines() if re.match(r"^[A-Z_]+=", line))
        ran += 1
        if "saga show $ID --json" in block:
            data = json.loads(result.stdout.splitlines()[-1])
            assert data["status"] == "compensated"
            assert any(a["outcome"] == "timed_out" for a in data["attempts"])
    assert ran >= 1
    # the demo's log keeps its card numbers sealed
    assert b"4000000000000000" not in (tmp_path / "saga.db").read_bytes()

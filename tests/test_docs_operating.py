"""The guide's "Operating sagas" shows real output: its commands run, in order, on an empty
database, and print what it shows (times aside)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.cli_run import run
from tests.docs_pages import blocks, read, section

_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")
_OFFSET = re.compile(r"\+ *\d+\.\d{3}s")


def _steps() -> list[tuple[str, str]]:
    """Each ``$ saga ...`` command of the section's console blocks, with the output shown."""
    steps: list[tuple[str, str]] = []
    for block in blocks(section(read("docs/operating.md"), "## Operating sagas"), "console"):
        for line in block.splitlines(keepends=True):
            if line.startswith("$ "):
                steps.append((line[2:].strip(), ""))
            else:
                command, shown = steps[-1]
                steps[-1] = (command, shown + line)
    return steps


def _plain(text: str) -> str:
    return _OFFSET.sub("+T", _TIME.sub("TIME", text))


def test_the_operating_section_shows_what_the_commands_print(tmp_path: Path) -> None:
    steps = _steps()
    commands = {shlex.split(c)[1] for c, _ in steps}
    assert {"skip", "fork", "retry", "cancel", "check", "show"} <= commands
    env = {"SAGA_DATABASE_URL": f"sqlite:///{tmp_path / 'ops.db'}"}
    for command, shown in steps:
        argv = shlex.split(command)
        assert argv[0] == "saga"
        result = run(*argv[1:], env=env)
        printed = result.stdout + (result.stderr if result.returncode else "")
        assert _plain(printed) == _plain(shown), command

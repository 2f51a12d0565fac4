"""README stays true: its Quick start has two commands, and its snippets run."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _commands(block: str) -> list[str]:
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_quick_start_has_exactly_two_commands() -> None:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    commands = _commands(blocks[0])
    assert len(commands) == 2
    assert "saga demo" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci, ".ci/run must run README's test command"


def test_the_test_command_installs_what_the_browser_tests_need() -> None:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    command = _commands(re.findall(r"```sh\n(.*?)```", section, flags=re.S)[0])[1]
    extras = re.search(r"\.\[([a-z,]+)\]", command)
    assert extras is not None and {"dev", "ui"} <= set(extras[1].split(","))


def test_the_timeline_screenshot_is_shown() -> None:
    assert "](docs/timeline.png)" in README
    assert (ROOT / "docs" / "timeline.png").read_bytes().startswith(b"\x89PNG")


def test_python_snippets_run(tmp_path: Path) -> None:
    blocks = _blocks("python")
    assert blocks
    for block in blocks:
        result = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "trips.db").exists()


def test_command_line_snippet_runs(tmp_path: Path) -> None:
    block = next(b for b in _blocks("sh") if "saga db upgrade" in b)
    saga = str(Path(sys.executable).with_name("saga"))
    env = dict(os.environ, SAGA_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}")
    outputs = []
    for command in _commands(block):
        argv = shlex.split(command)
        assert argv[0] == "saga"
        result = subprocess.run(
            [saga, *argv[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, f"{command}: {result.stderr}"
        outputs.append(result.stdout)
    listing = outputs[4]
    assert "order-42" in listing and "compensated" in listing


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_examples_import(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import examples.{path.stem}"], cwd=ROOT, capture_output=True,
        text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr


def test_postgres_snippet_runs(postgres_url: str) -> None:
    block = next(b for b in _blocks("sh") if "export SAGA_DATABASE_URL=postgresql" in b)
    commands = _commands(block)
    assert commands[0].startswith("export SAGA_DATABASE_URL=")
    saga = str(Path(sys.executable).with_name("saga"))
    env = dict(os.environ, SAGA_DATABASE_URL=postgres_url)  # a scratch database, not the doc's
    for command in commands[1:]:
        argv = shlex.split(command)
        assert argv[0] == "saga"
        result = subprocess.run(
            [saga, *argv[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{command}: {result.stderr}"
    listing = subprocess.run(
        [saga, "list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "book-trip v1  completed" in listing

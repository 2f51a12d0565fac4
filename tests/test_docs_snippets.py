"""Every example of the README and of the guide runs: each page's Python blocks, in order, in one
directory; its command-line sessions; and its code imports only the public modules."""

from __future__ import annotations

import ast
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_run import run
from tests.docs_pages import PUBLIC_MODULES, ROOT, blocks, commands, read, section, user_pages

SAGA = str(Path(sys.executable).with_name("saga"))


def _imported(block: str) -> set[str]:
    """The modules a block of Python imports from."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(block)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


@pytest.mark.parametrize("page", user_pages())
def test_python_snippets_run(page: str, tmp_path: Path) -> None:
    for block in blocks(read(page), "python"):
        result = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == 0, f"{page}:\n{block}\n{result.stderr}"
    if page in ("README.md", "docs/index.md"):
        assert (tmp_path / "trips.db").exists()


def test_the_pages_have_python_snippets() -> None:
    counts = {page: len(blocks(read(page), "python")) for page in user_pages()}
    assert sum(counts.values()) >= 15, counts
    for page in ("README.md", "docs/index.md", "docs/adapters.md", "docs/policies.md",
                 "docs/testing.md", "docs/operating.md", "docs/storage.md", "docs/telemetry.md"):
        assert counts[page] >= 1, page


@pytest.mark.parametrize("page", user_pages())
def test_snippets_import_only_public_modules(page: str) -> None:
    for block in blocks(read(page), "python"):
        ours = {m for m in _imported(block) if m == "saga" or m.startswith("saga.")}
        assert ours <= PUBLIC_MODULES, f"{page} imports {sorted(ours - PUBLIC_MODULES)}:\n{block}"


def test_a_private_import_is_caught() -> None:
    block = "from saga import Saga\nimport saga.store.queries\nfrom saga.operators.fork import fork\n"
    assert _imported(block) - PUBLIC_MODULES == {"saga.store.queries", "saga.operators.fork"}


def test_the_command_line_session_runs(tmp_path: Path) -> None:
    [block] = blocks(section(read("docs/cli.md"), "## Commands"), "sh")
    env = {"SAGA_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    outputs = []
    for command in commands(block):
        argv = shlex.split(command)
        assert argv[0] == "saga"
        result = run(*argv[1:], env=env)
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


def test_the_postgres_session_runs(postgres_url: str) -> None:
    # real processes: the console script, with the URL in its environment as the page says
    block = blocks(section(read("docs/storage.md"), "## PostgreSQL"), "sh")[0]
    lines = commands(block)
    assert lines[0].startswith("export SAGA_DATABASE_URL=postgresql")
    env = dict(os.environ, SAGA_DATABASE_URL=postgres_url)  # a scratch database, not the doc's
    for command in lines[1:]:
        argv = shlex.split(command)
        assert argv[0] == "saga"
        result = subprocess.run(
            [SAGA, *argv[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{command}: {result.stderr}"
    listing = subprocess.run(
        [SAGA, "list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "book-trip v1  completed" in listing

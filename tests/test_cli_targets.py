"""Loading TARGETs: only the target comes from the working directory, and a target that
exits or raises while it imports is one error line, never a silent success."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from saga import Saga, TargetError
from saga.cli.command import load_targets

from .cli_run import error_line, ok, run

SHOP = '''
from saga import Saga, StepContext

shop = Saga("order")


@shop.step
def pick(ctx: StepContext) -> dict[str, int]:
    return {"picked": 1}
'''


def _shadow(directory: Path, name: str, marker: Path) -> None:
    """A module named like one of the library's dependencies, which must never be imported."""
    (directory / f"{name}.py").write_text(
        f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\n"
        f"raise ImportError('the {name}.py beside the target was imported')\n"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("import sys\nsys.exit(0)\n", "SystemExit: 0"),
        ("import sys\nsys.exit('bye')\n", "SystemExit: bye"),
        ("class Stop(BaseException):\n    pass\n\n\nraise Stop('from a plugin')\n", "Stop: from a plugin"),
    ],
)
@pytest.mark.parametrize("command", ["start", "worker"])
def test_a_target_that_exits_or_raises_a_base_exception_is_one_error(
    tmp_path: Path, body: str, expected: str, command: str
) -> None:
    (tmp_path / "quits.py").write_text(body)
    db = tmp_path / "saga.db"
    args = ("start", "quits", "order", "--input", "{}") if command == "start" else (
        "worker", "quits", "--until-idle")
    line = error_line("--db", f"sqlite:///{db}", *args, cwd=tmp_path)
    assert "target 'quits' does not import" in line
    assert expected in line
    assert not db.exists()


def test_a_keyboard_interrupt_while_importing_still_interrupts(tmp_path: Path) -> None:
    (tmp_path / "interrupted.py").write_text("raise KeyboardInterrupt\n")
    result = run("--db", f"sqlite:///{tmp_path / 'saga.db'}", "worker", "interrupted", "--until-idle",
                 cwd=tmp_path)
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr


def test_modules_beside_the_target_never_shadow_the_library(tmp_path: Path) -> None:
    # real processes: in this one the library's dependencies are imported already
    marker = tmp_path / "imported.txt"
    for name in ("alembic", "sqlalchemy", "pydantic", "tenacity", "psycopg"):
        _shadow(tmp_path, name, marker)
    (tmp_path / "shop.py").write_text(SHOP)
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    started = ok("--db", db, "start", "shop", "order", "--input", "{}", "--id", "o-1", cwd=tmp_path,
                 process=True)
    assert started == "o-1\n"
    ok("--db", db, "worker", "shop", "--until-idle", cwd=tmp_path, process=True)
    assert "o-1  order v1  completed" in ok("--db", db, "list", cwd=tmp_path, process=True)
    assert "schema revision" in ok("--db", db, "db", "upgrade", cwd=tmp_path, process=True)
    assert not marker.exists(), marker.read_text()


def test_a_target_named_like_an_installed_module_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "imported.txt"
    _shadow(tmp_path, "alembic", marker)
    line = error_line("--db", f"sqlite:///{tmp_path / 'x.db'}", "worker", "alembic", "--until-idle",
                      cwd=tmp_path, process=True)  # a process that has not imported alembic yet
    assert "alembic" in line and "installed" in line
    assert not marker.exists()


def test_a_package_target_imports_its_own_modules(tmp_path: Path) -> None:
    package = tmp_path / "store_app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "steps.py").write_text("def amount() -> int:\n    return 7\n")
    (package / "sagas.py").write_text(
        "from saga import Saga, StepContext\n\nfrom .steps import amount\n\n"
        "pay = Saga('pay')\n\n\n@pay.step\ndef charge(ctx: StepContext) -> int:\n    return amount()\n"
    )
    db = f"sqlite:///{tmp_path / 'app.db'}"
    ok("--db", db, "start", "store_app.sagas:pay", "pay", "--input", "{}", "--id", "p-1", cwd=tmp_path)
    ok("--db", db, "worker", "store_app.sagas", "--until-idle", cwd=tmp_path)
    assert "succeeded on attempt 1: 7" in ok("--db", db, "show", "p-1", cwd=tmp_path)


@pytest.fixture
def clean_imports() -> Iterator[None]:
    """Forget the modules a test imports from its own directory."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


@pytest.mark.usefixtures("clean_imports")
def test_loading_a_target_leaves_sys_path_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cli_target_shop.py").write_text(SHOP)
    (tmp_path / "cli_target_neighbour.py").write_text("VALUE = 1\n")
    monkeypatch.chdir(tmp_path)
    path = list(sys.path)
    [found] = load_targets(["cli_target_shop"])
    assert isinstance(found, Saga) and found.name == "order"
    assert sys.path == path
    assert sys.modules["cli_target_shop"].__file__ == str(tmp_path / "cli_target_shop.py")
    with pytest.raises(ImportError):
        importlib.import_module("cli_target_neighbour")


@pytest.mark.parametrize("target", ["../up", "a b", "", ":x", "1abc", "mod:"])
def test_malformed_targets_are_refused(target: str) -> None:
    with pytest.raises(TargetError):
        load_targets([target])

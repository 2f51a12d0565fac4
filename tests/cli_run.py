"""Running the ``saga`` command for the command-line tests.

By default the command runs in this process: ``saga.cli.main(argv)`` is called with its own
stdin, stdout and stderr, its own environment and working directory, and everything it may
change is put back afterwards (the environment, the working directory, ``sys.path``,
``sys.argv``, the signal handlers, the root logger, and the modules a target brought in, so the
next run imports them afresh as a new process would). This saves the half second an interpreter
takes to start and import the library, for each of the thousand commands the tests run.

``process=True`` runs the installed ``saga`` console script as a real process instead: for what
only a process shows (signals, its memory, its exit, a terminal, a pipe on stdin), and to keep
the console script itself covered.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import traceback
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Literal

from saga.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAGA = str(Path(sys.executable).with_name("saga"))

_LIBRARY = tuple({
    str(Path(p).resolve()) + os.sep
    for p in (str(ROOT / "saga"), str(ROOT / "adapters"), str(ROOT / "migrations"), sys.prefix,
              sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values())
})
"""Where the library and its dependencies live."""
_TESTS = str(ROOT / "tests") + os.sep
_FIXTURES = str(ROOT / "tests" / "fixtures") + os.sep
_places: dict[str, bool] = {}

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)

_PYTHON_WARNINGS: list[tuple[Literal["default", "ignore"], type[Warning], str]] = [
    # the filters of a new interpreter (no -W, no $PYTHONWARNINGS), first match first
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
]


def run(*args: str, cwd: Path = ROOT, timeout: float = 120, env: Mapping[str, str] | None = None,
        unset: Iterable[str] = (), input: str | None = None, process: bool = False,
        ) -> subprocess.CompletedProcess[str]:
    """``saga ARGS`` in ``cwd``, its output captured.

    Its environment is this one without ``$SAGA_DATABASE_URL`` nor the names in ``unset``, with
    ``env`` added. ``input`` is its stdin (empty when in this process). ``process=True``: a real
    process, the installed console script.
    """
    gone = {"SAGA_DATABASE_URL", *unset}
    environ = {k: v for k, v in os.environ.items() if k not in gone} | dict(env or {})
    if process or threading.current_thread() is not threading.main_thread():
        # from another thread, a real process: the streams, the working directory and the
        # signal handlers the command would take over are the whole process's
        return subprocess.run([SAGA, *args], cwd=cwd, env=environ, input=input, capture_output=True,
                              text=True, timeout=timeout, check=False)
    return _in_process(list(args), cwd, environ, input or "", timeout)


def ok(*args: str, cwd: Path = ROOT, env: Mapping[str, str] | None = None,
       process: bool = False) -> str:
    """The stdout of ``saga ARGS``, which must succeed."""
    result = run(*args, cwd=cwd, env=env, process=process)
    assert result.returncode == 0, result.stderr
    return result.stdout


def error_line(*args: str, cwd: Path = ROOT, code: int = 1, env: Mapping[str, str] | None = None,
               process: bool = False) -> str:
    """The one line ``saga ARGS`` prints on stderr as it fails with exit ``code``."""
    result = run(*args, cwd=cwd, env=env, process=process)
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    if code == 1:
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("saga: error: ")
    return lines[-1]


def _in_process(argv: list[str], cwd: Path, environ: dict[str, str], stdin: str,
                timeout: float) -> subprocess.CompletedProcess[str]:
    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8")
    stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace")
    # a new process's terminal size, as shutil finds it when stdout is a pipe
    environ = {"COLUMNS": "80", "LINES": "24"} | environ
    with _isolated(cwd, environ):
        sys.argv = [SAGA, *argv]
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
        sys.stdout, sys.stderr = stdout, stderr
        threads = set(threading.enumerate())
        try:
            code = main(argv)
        except SystemExit as e:  # as Python ends: None is 0, a number itself, anything else printed
            code = 0 if e.code is None else e.code if isinstance(e.code, int) else _printed(e.code)
        except BaseException:  # what escapes the command: a traceback and exit 1, as Python does
            traceback.print_exc()
            code = 1
        _join(set(threading.enumerate()) - threads, timeout)  # as the interpreter does at exit
        stdout.flush()
        stderr.flush()
    return subprocess.CompletedProcess([SAGA, *argv], code, _text(out.getvalue()),
                                       _text(err.getvalue()))


def _printed(message: object) -> int:
    print(message, file=sys.stderr)
    return 1


def _text(data: bytes) -> str:
    """Bytes as ``subprocess.run(text=True)`` decodes them (universal newlines)."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()


def _join(threads: set[threading.Thread], timeout: float) -> None:
    end = time.monotonic() + timeout
    for t in threads:
        if not t.daemon:
            t.join(max(0.0, end - time.monotonic()))
            assert not t.is_alive(), f"the command left thread {t.name} running"


@contextmanager
def _isolated(cwd: Path, environ: dict[str, str]) -> Iterator[None]:
    """Run the body as a new process would see the world, and put everything back afterwards."""
    saved_environ = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_path, saved_argv = list(sys.path), list(sys.argv)
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    saved_signals = {s: signal.getsignal(s) for s in _SIGNALS}
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    targets = {name: m for name, m in sys.modules.items() if _is_target(m)}
    for name in targets:
        del sys.modules[name]
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    root.handlers = []  # so that the command's logging.basicConfig takes effect, as in a new process
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()
            for action, category, module in reversed(_PYTHON_WARNINGS):
                warnings.filterwarnings(action, category=category, module=module)
            yield
    finally:
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers, root.level = saved_handlers, saved_level
        for signum, previous in saved_signals.items():
            if previous is not None:
                signal.signal(signum, previous)
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        sys.path[:], sys.argv[:] = saved_path, saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
        for name in [n for n, m in sys.modules.items() if _is_target(m)]:
            del sys.modules[name]
        sys.modules.update(targets)
        for name in sorted(targets):  # the packages point at the modules this process had again
            parent, _, child = name.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], child, targets[name])


def _is_target(module: ModuleType | None) -> bool:
    """Whether a module is a target's: from the test's directory, ``examples``, ``tests.fixtures``,
    anywhere but the library, its dependencies and the tests' own helpers."""
    if module is None:
        return False
    file = getattr(module, "__file__", None)
    places = [file] if file else list(getattr(module, "__path__", None) or [])
    return any(_is_target_place(p) for p in places)


def _is_target_place(place: str) -> bool:
    if place not in _places:
        path = str(Path(place).resolve())
        _places[place] = not path.startswith(_LIBRARY) and (
            not path.startswith(_TESTS) or path.startswith(_FIXTURES))
    return _places[place]

"""The ``saga`` package of a source tree, laid out as installed, for a benchmark's subprocesses.

The project maps ``saga.migrations`` and ``saga.adapters`` to top-level
folders (``[tool.setuptools.package-dir]`` in pyproject.toml), so a source tree
on ``sys.path`` is not an importable package by itself; and the venv's
editable install of the working tree answers for any ``saga`` module that the
path does not. :func:`stage` copies a tree's packages into one folder as an
installed copy would hold them (the mapping read from that tree's own
pyproject.toml), with a ``sitecustomize.py`` that every Python process started
with :func:`child_env` runs first: it removes the editable install's finder
and refuses (``ImportError``) any ``saga`` module found outside the folder,
and exits at once if ``saga`` itself does not come from there.

Imports nothing of ``saga``.
"""

from __future__ import annotations

import compileall
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The source tree this file belongs to."""

TREE_VARIABLE = "SAGA_BENCH_TREE"
"""Environment variable: the staged folder that every ``saga`` module must come from."""

SITECUSTOMIZE = '''\
"""Pins ``saga`` to this folder for a benchmark (written by benchmarks/trees.py)."""

import os
import sys

_TREE = os.environ.get("SAGA_BENCH_TREE", "")


class _Pinned:
    """Finds ``saga`` modules with the other finders, refusing any from outside the tree."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "saga" and not name.startswith("saga."):
            return None
        for finder in sys.meta_path:
            if finder is cls or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        where = spec.origin or next(iter(spec.submodule_search_locations or ()), "")
        if not os.path.abspath(where).startswith(_TREE + os.sep):
            raise ImportError(f"{name} would come from {where}, not from {_TREE}")
        return spec


if _TREE:
    sys.meta_path[:] = [f for f in sys.meta_path
                        if not str(getattr(f, "__module__", "")).startswith("__editable__")]
    sys.path_hooks[:] = [h for h in sys.path_hooks
                         if not str(getattr(h, "__module__", "")).startswith("__editable__")]
    sys.path_importer_cache.clear()
    sys.meta_path.insert(0, _Pinned)
    try:
        import saga
    except ImportError as e:
        sys.stderr.write(f"benchmark tree pin: cannot import saga from {_TREE}: {e}\\n")
        sys.stderr.flush()
        os._exit(86)
    if not os.path.abspath(saga.__file__).startswith(_TREE + os.sep):
        sys.stderr.write(f"benchmark tree pin: saga is {saga.__file__}, not under {_TREE}\\n")
        sys.stderr.flush()
        os._exit(86)
'''


def git(repo: Path, *args: str) -> str:
    """A git command's standard output, stripped."""
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def export(repo: Path, rev: str, dest: Path) -> str:
    """Write the files of commit ``rev`` of ``repo`` under ``dest``; returns its full hash."""
    full = git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}")
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(repo), "archive", full], stdout=subprocess.PIPE)
    assert archive.stdout is not None
    tar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=False)
    archive.stdout.close()
    if archive.wait() != 0 or tar.returncode != 0:
        raise RuntimeError(f"could not export {rev} of {repo}")
    return full


def stage(src: Path, dest: Path) -> Path:
    """Copy the ``saga`` packages of the source tree ``src`` into ``dest`` as installed, with the
    pin (see the module's docstring); returns ``dest``."""
    project = tomllib.loads((src / "pyproject.toml").read_text())
    mapping: dict[str, str] = project.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    dest.mkdir(parents=True)
    shutil.copytree(src / mapping.get("saga", "saga"), dest / "saga", ignore=skip)
    for name, folder in sorted(mapping.items()):
        if name.startswith("saga."):
            target = dest.joinpath(*name.split("."))
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(src / folder, target, ignore=skip)
    (dest / "sitecustomize.py").write_text(SITECUSTOMIZE)
    # Compiled now, so that no measured process spends its time compiling.
    compileall.compile_dir(str(dest / "saga"), quiet=1)
    return dest


def child_env(staged: Path) -> dict[str, str]:
    """The environment of a subprocess that must import ``saga`` from ``staged`` (and
    ``benchmarks.*`` from this tree, which comes after it on the path)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(staged), str(ROOT)])
    env[TREE_VARIABLE] = str(staged)
    env.pop("PYTHONNOUSERSITE", None)
    return env


def describe_commit(repo: Path, rev: str) -> str:
    """``abbrev subject`` of a commit."""
    return git(repo, "log", "-1", "--format=%h %s", rev)


def describe_working_tree(repo: Path) -> str:
    """The working tree's HEAD, and whether files differ from it."""
    head = git(repo, "log", "-1", "--format=%h", "HEAD")
    changed = [line for line in git(repo, "status", "--porcelain", "--", "saga", "migrations",
                                    "adapters", "pyproject.toml").splitlines() if line]
    return f"working tree at {head}" + (f" with {len(changed)} changed file(s)" if changed else "")

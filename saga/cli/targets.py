"""Finding the sagas a command line names: ``module`` or ``module:attribute`` TARGETs.

A TARGET's top-level module or package is taken from the working directory
when it is there, else imported as usual. Only the TARGET comes from the
working directory: it is loaded by path, ``sys.path`` is left alone, so a
file beside it named like one of the library's dependencies (``alembic.py``)
is never imported in its place.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from saga.definition import Saga
from saga.errors import TargetError
from saga.text import shorten

__all__ = ["load_targets"]


def load_targets(targets: Sequence[str]) -> list[Saga]:
    """Every :class:`Saga` found in each ``module`` or ``module:attribute`` target.

    Raises :class:`~saga.TargetError` if a target is malformed, does not import
    (whatever it raises, ``SystemExit`` included; only ``KeyboardInterrupt``
    passes through), lacks the attribute, or holds no saga.
    """
    found: dict[int, Saga] = {}
    for target in targets:
        for s in _sagas(target):
            found[id(s)] = s
    return list(found.values())


def _sagas(target: str) -> list[Saga]:
    shown = repr(shorten(target))
    module_name, colon, attr = target.partition(":")
    parts = module_name.split(".")
    if not all(p.isidentifier() for p in parts) or (colon and not attr):
        raise TargetError(f"target {shown}: expected module or module:attribute")
    module = _import(module_name, shown)
    if attr:
        obj: Any = module
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"target {shown}: {shorten(module_name)} has no attribute "
                              f"{shorten(attr)!r}") from None
        candidates = list(obj) if isinstance(obj, list | tuple | set) else [obj]
    else:
        candidates = list(vars(module).values())
    sagas = [c for c in candidates if isinstance(c, Saga)]
    if not sagas:
        raise TargetError(f"target {shown} holds no saga.Saga")
    return sagas


def _import(module_name: str, shown: str) -> ModuleType:
    top = module_name.partition(".")[0]
    try:
        if top not in sys.modules:
            _load_from_working_directory(top, shown)
        return importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except TargetError:
        raise
    except BaseException as e:  # SystemExit too: a target must not end the command quietly
        raise TargetError(
            f"target {shown} does not import: {type(e).__name__}: {shorten(str(e), 200)}"
        ) from None


def _load_from_working_directory(top: str, shown: str) -> None:
    """Load the module or package ``top`` from the working directory, if it is there."""
    here = str(Path.cwd())
    spec = importlib.machinery.PathFinder.find_spec(top, [here])
    if spec is None:
        return  # not here: the usual import finds it or says why
    elsewhere = importlib.util.find_spec(top)
    if elsewhere is not None and elsewhere.origin != spec.origin:
        raise TargetError(
            f"target {shown}: {top} in the working directory has the name of an installed "
            f"module ({elsewhere.origin}); rename it"
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[top] = module
    if spec.loader is None:
        return  # a namespace package: nothing to run
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(top, None)
        raise

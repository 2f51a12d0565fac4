"""Which backend opens which URL: a scheme maps to a ``"module:Class"`` imported on first use.

Backends are named, not imported, here: the interface (:mod:`saga.store.base`)
asks the registry for a class, and only then is the backend's module (and its
driver) imported. A backend's module imports the interface, never the other
way round.
"""

from __future__ import annotations

import importlib
import os
from typing import TypeVar

from saga.errors import InvalidInput
from saga.store.urls import parse, shorten
from saga.text import article

T = TypeVar("T")

__all__ = ["BACKENDS", "DEFAULT_URL", "backend_for", "default_url", "register"]

DEFAULT_URL = "sqlite:///saga.db"

BACKENDS: dict[str, str] = {
    "sqlite": "saga.store.sqlite:SQLiteEventStore",
    "postgresql": "saga.store.postgres:PostgresEventStore",
    "memory": "saga.store.memory:MemoryEventStore",
}
"""URL scheme (the part before ``+driver``) to the backend class, as ``"module:Class"``."""

_DRIVERS: dict[str, tuple[str, ...]] = {
    "sqlite": ("", "pysqlite"),
    "postgresql": ("", "psycopg"),
    "memory": ("",),
}


def default_url() -> str:
    """``$SAGA_DATABASE_URL``, else a SQLite file ``saga.db`` in the working directory."""
    return os.environ.get("SAGA_DATABASE_URL") or DEFAULT_URL


def register(scheme: str, target: str, drivers: tuple[str, ...] = ("",)) -> None:
    """Open URLs of ``scheme`` with the class ``target`` names (``"package.module:Class"``)."""
    BACKENDS[scheme] = target
    _DRIVERS[scheme] = drivers


def backend_for(url: str | None, interface: type[T]) -> type[T]:
    """The store class for ``url`` (a subclass of ``interface``); raises ``InvalidInput`` (one
    line) for an unusable URL."""
    parsed = parse(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    target = BACKENDS.get(backend)
    if target is None:
        raise InvalidInput(
            f"unsupported database {shorten(backend)!r}: use one of {', '.join(sorted(BACKENDS))}"
        )
    if driver not in _DRIVERS.get(backend, ("",)):
        known = ", ".join(f"{backend}+{d}" for d in _DRIVERS[backend] if d) or backend
        raise InvalidInput(f"unsupported driver {shorten(driver)!r} for {backend}: use {known}")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, interface)):
        raise TypeError(f"{target} is not {article(interface.__name__)}")
    return cls

"""Choosing a backend from a database URL."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from ..errors import InvalidInput

if TYPE_CHECKING:
    from .sql import EventStore

__all__ = ["DEFAULT_URL", "backend_for", "default_url"]

DEFAULT_URL = "sqlite:///saga.db"


def default_url() -> str:
    """``$SAGA_DATABASE_URL``, else a SQLite file ``saga.db`` in the working directory."""
    return os.environ.get("SAGA_DATABASE_URL") or DEFAULT_URL


def backend_for(url: str | None) -> type[EventStore]:
    """The store class for ``url`` (SQLite or PostgreSQL)."""
    if url is None:
        raise InvalidInput("EventStore needs a database URL, e.g. sqlite:///saga.db")
    if not isinstance(url, str):
        raise InvalidInput(f"a database URL must be a string, not {url!r}")
    try:
        backend = sa.make_url(url).get_backend_name()
    except ArgumentError:
        raise InvalidInput(
            f"not a database URL: {url!r} (try sqlite:///saga.db or "
            "postgresql+psycopg://user@host/db)"
        ) from None
    if backend == "sqlite":
        from .sqlite import SQLiteEventStore

        return SQLiteEventStore
    if backend == "postgresql":
        from .postgres import PostgresEventStore

        return PostgresEventStore
    raise InvalidInput(f"unsupported database {backend!r}: use sqlite or postgresql")

"""A PostgreSQL database of one's own, created for a test and dropped after it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

__all__ = ["server_url", "temporary_database"]

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """``$SAGA_TEST_POSTGRES_URL``, else the local server's maintenance database."""
    return os.environ.get("SAGA_TEST_POSTGRES_URL") or DEFAULT_URL


@contextmanager
def temporary_database(prefix: str = "saga_test") -> Iterator[str]:
    """Create an empty database, yield its URL, drop it (closing whatever still uses it)."""
    base = sa.make_url(server_url())
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

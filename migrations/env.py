"""Alembic environment: runs on the connection the library hands over, or on a URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from saga.store.schema import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("SAGA_DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: set sqlalchemy.url or SAGA_DATABASE_URL")
    engine = create_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run()

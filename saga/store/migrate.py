"""Running the Alembic migrations shipped in ``saga.migrations``."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

__all__ = ["alembic_config", "downgrade", "head_revision", "is_known", "upgrade"]


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic configuration for the shipped migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(files("saga.migrations")))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision among the shipped migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def is_known(revision: str) -> bool:
    """Whether ``revision`` is one of the shipped migrations (else a newer library wrote it)."""
    script = ScriptDirectory.from_config(alembic_config())
    return any(rev.revision == revision for rev in script.walk_revisions())


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Migrate the database behind ``connection`` (inside its transaction) to ``revision``."""
    command.upgrade(alembic_config(connection), revision)


def downgrade(connection: Connection, revision: str) -> None:
    """Migrate the database behind ``connection`` down to ``revision``."""
    command.downgrade(alembic_config(connection), revision)

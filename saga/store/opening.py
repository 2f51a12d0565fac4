"""Opening a SQL store: checking the schema (creating it on an empty database when asked),
failing fast with one line when the database cannot be used, and upgrading it."""

from __future__ import annotations

from contextlib import AbstractContextManager

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from saga.errors import SagaError, SagaNotFound, StoreError
from saga.store.schema import HEAD
from saga.store.transient import first_line
from saga.store.urls import redact

__all__ = ["SchemaChecks"]


class SchemaChecks:
    """The schema side of a SQL store (mixed into :class:`~saga.store.sql.SqlEventStore`)."""

    url: str
    engine: sa.Engine

    def _read(self) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError  # pragma: no cover - the store provides it

    def _write(self) -> AbstractContextManager[sa.Connection]:
        raise NotImplementedError  # pragma: no cover - the store provides it

    def _lock_for_migration(self, conn: sa.Connection) -> None:
        """Serialise concurrent schema creation (backends override)."""

    def _open(self, *, ensure: bool) -> None:
        """Check the schema (creating it on an empty database if ``ensure``), failing fast.

        Opening is not retried: a wrong host, port, role, database or option
        does not heal, and saying so at once beats retrying for half a minute.
        """
        try:
            self._check_schema(ensure=ensure)
        except SagaError:
            self.engine.dispose()
            raise
        except sa_exc.SQLAlchemyError as e:
            self.engine.dispose()
            raise StoreError(f"cannot open the database at {redact(self.url)}: {first_line(e)}"
                             ) from e

    def _check_schema(self, *, ensure: bool) -> None:
        current, empty = self._inspect()
        if current == HEAD:
            return
        if current is not None:
            raise StoreError(self._mismatch(current))
        where = redact(self.url)
        if not ensure:
            if not empty:
                raise StoreError(f"the database at {where} holds other tables and no saga log")
            raise SagaNotFound(f"no saga log in the database at {where} (nothing has been started "
                               "there)")
        from saga.store.migrate import upgrade

        with self._write() as conn:
            self._lock_for_migration(conn)
            if self._revision_of(conn) is not None:
                return  # another process created it while we waited
            upgrade(conn)

    def _inspect(self) -> tuple[str | None, bool]:
        """The schema revision (``None``: none) and whether the database holds no table."""
        with self._read() as conn:
            names = sa.inspect(conn).get_table_names()
            if "alembic_version" not in names:
                return None, not names
            return self._revision_of(conn), False

    @staticmethod
    def _revision_of(conn: sa.Connection) -> str | None:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
        return None if row is None else str(row[0])

    @staticmethod
    def _mismatch(current: str) -> str:
        """Why a database at schema revision ``current`` (not ``HEAD``) cannot be used."""
        from saga.store.migrate import is_known

        if not is_known(current):
            return _newer(current)
        return (f"the database schema is at revision {current}, this library needs {HEAD}: "
                "run `saga db upgrade`")

    def upgrade(self) -> str:
        """Apply every pending migration; returns the revision the database is now at."""
        from saga.store.migrate import is_known, upgrade

        try:
            with self._write() as conn:
                self._lock_for_migration(conn)
                current = self._revision_of(conn)
                if current is not None and not is_known(current):
                    raise StoreError(_newer(current))
                upgrade(conn)
        except SagaError:
            raise
        except sa_exc.SQLAlchemyError as e:
            raise StoreError(f"cannot upgrade the database at {redact(self.url)}: "
                             f"{first_line(e)}") from e
        return HEAD


def _newer(current: str) -> str:
    return (f"the database schema is at revision {current}, which this library does not know: "
            f"the library is older than the database (it knows up to {HEAD}); "
            "upgrade saga-coordinator")

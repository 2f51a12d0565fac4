"""The pytest plugin: ``saga_store``, ``saga_clock`` and ``saga_coordinator`` fixtures.

Registered through the ``pytest11`` entry point, so installing the package
makes the fixtures available to every test suite. Each test gets a fresh
store: in memory (``memory://``) by default, or a fresh PostgreSQL database
(made from a migrated template, dropped afterwards) when
``$SAGA_TEST_POSTGRES_URL`` names a server. A suite picks another store by
overriding the ``saga_store_url`` fixture (for a SQLite file:
``return f"sqlite:///{tmp_path / 'saga.db'}"``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from saga.store import EventStore
from saga.testing.coordinator import SagaTestCoordinator
from saga.testing.limits import SagaTestClock

# The store contract's assertions, explained on failure as a test module's are (registered
# before a test module imports it).
pytest.register_assert_rewrite("saga.testing.contract", "saga.testing.contract_read",
                               "saga.testing.contract_write")

__all__ = [
    "POSTGRES_ENV",
    "saga_clock",
    "saga_coordinator",
    "saga_postgres_databases",
    "saga_store",
    "saga_store_url",
]

POSTGRES_ENV = "SAGA_TEST_POSTGRES_URL"

MEMORY_URL = "memory://"
DEFAULT_BACKEND = "memory"
"""The store a test gets when no PostgreSQL server is named: ``"memory"`` or ``"sqlite"``."""


def default_store_url(directory: Path) -> str:
    """Where a test's store lives when no PostgreSQL server is named: in memory by default,
    or a SQLite file in ``directory`` if :data:`DEFAULT_BACKEND` is ``"sqlite"``."""
    return MEMORY_URL if DEFAULT_BACKEND == "memory" else f"sqlite:///{directory / 'saga.db'}"


class PostgresDatabases:
    """Fresh databases for tests, each a copy of one template migrated to head."""

    def __init__(self, admin_url: str) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.admin_url = sa.make_url(admin_url)
        self.admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        self.template = f"saga_tmpl_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{self.template}"')
        EventStore(self.url_of(self.template)).close()

    def url_of(self, database: str) -> str:
        """The URL of ``database`` on the same server."""
        return str(self.admin_url.set(database=database).render_as_string(hide_password=False))

    def _execute(self, sql: str) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(sql)

    def create(self) -> str:
        """A new database with the schema at head; returns its name."""
        name = f"saga_test_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def drop(self, name: str) -> None:
        """Drop a database made by :meth:`create`."""
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        """Drop the template and let go of the server."""
        self.drop(self.template)
        self.admin.dispose()


@pytest.fixture(scope="session")
def saga_postgres_databases() -> Iterator[PostgresDatabases]:
    """The session's PostgreSQL template, on the server ``$SAGA_TEST_POSTGRES_URL`` names."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.fail(f"${POSTGRES_ENV} is not set", pytrace=False)
    try:
        dbs = PostgresDatabases(url)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        pytest.fail(f"${POSTGRES_ENV} is set but PostgreSQL cannot be used: {first}", pytrace=False)
    yield dbs
    dbs.close()


@pytest.fixture
def saga_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The database URL of this test's store (override this fixture to choose another)."""
    if os.environ.get(POSTGRES_ENV):
        dbs: PostgresDatabases = request.getfixturevalue("saga_postgres_databases")
        name = dbs.create()
        yield dbs.url_of(name)
        dbs.drop(name)
    else:
        yield default_store_url(tmp_path)


@pytest.fixture
def saga_store(saga_store_url: str) -> Iterator[EventStore]:
    """A fresh event store, closed after the test."""
    store = EventStore(saga_store_url)
    yield store
    store.close()


@pytest.fixture
def saga_clock() -> SagaTestClock:
    """A virtual clock (a :class:`~saga.VirtualClock`): time moves only when something sleeps."""
    return SagaTestClock()


@pytest.fixture
def saga_coordinator(saga_store: EventStore, saga_clock: SagaTestClock) -> Iterator[SagaTestCoordinator]:
    """A coordinator on ``saga_store`` and ``saga_clock``; register your sagas on it.

    It offers ``run_until_rest``, ``fail``, ``hang`` and ``assert_history``;
    after the test it undoes the injected faults.
    """
    coordinator = SagaTestCoordinator(saga_store, clock=saga_clock)
    yield coordinator
    coordinator.close()

"""Shared fixtures: real databases, one per test, and a virtual clock; and the grouping of tests
on pytest-xdist's workers."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from saga import EventStore, VirtualClock
from saga.testing.plugin import PostgresDatabases

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

# The suite starts hundreds of interpreters (workers, real `saga` processes): let them keep the
# compiled library instead of compiling it again each time, whatever the environment says.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--dist loadgroup`` on pytest 9.2: name each test's ``xdist_group`` in its node id.

    pytest-xdist tells the scheduler a test's group by a suffix on its node id (``…@torture``),
    which it writes where pytest before 9.2 kept the id; on pytest 9.2 the write is lost and the
    groups are silently ignored (pytest-dev/pytest-xdist#1386). This writes it where pytest 9.2
    keeps the id, and does nothing where xdist's own write took effect.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(names)
        if names and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            from _pytest.nodeid import coerce_node_id

            item._id = coerce_node_id(item.nodeid + suffix)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file for this test."""
    return f"sqlite:///{tmp_path / 'saga.db'}"


@pytest.fixture
def clock() -> VirtualClock:
    """A clock that only moves when the code under test sleeps."""
    return VirtualClock()


def postgres_admin_url() -> str:
    """Where the tests find PostgreSQL: ``$SAGA_TEST_POSTGRES_URL``, else the local server."""
    return os.environ.get("SAGA_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """The session's template database; skips (or, with ``$CI`` set, fails) without a server."""
    url = postgres_admin_url()
    try:
        dbs = PostgresDatabases(url)
    except Exception as e:
        rendered = sa.make_url(url).render_as_string(hide_password=True)
        message = f"PostgreSQL is not reachable at {rendered}: {str(e).strip().splitlines()[0]}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set: the PostgreSQL tests must run)", pytrace=False)
        pytest.skip(message)
    yield dbs
    dbs.close()


@pytest.fixture
def postgres_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """A fresh PostgreSQL database for this test, with the schema at head; dropped afterwards."""
    name = postgres_databases.create()
    yield postgres_databases.url_of(name)
    postgres_databases.drop(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "memory"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of each backend (the store contract runs on every one)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    if request.param == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path / 'saga.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SQL database of each backend (for what reads the tables with SQL itself)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'saga.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    """An event store on a fresh database."""
    s = EventStore(store_url)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[EventStore]:
    """An event store on a fresh SQLite file (for tests that are about the coordinator)."""
    s = EventStore(sqlite_url)
    yield s
    s.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    """An empty database of each backend (no schema at all; the SQLite file does not exist)."""
    if request.param == "sqlite":
        yield sqlite_url
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    name = f"saga_empty_{uuid.uuid4().hex[:12]}"
    databases._execute(f'CREATE DATABASE "{name}"')
    yield databases.url_of(name)
    databases.drop(name)

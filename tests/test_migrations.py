"""The Alembic migrations build exactly the declared schema, and can be undone and redone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from saga import SagaStatus
from saga import events as ev
from saga.store import migrate, schema
from tests.helpers import open_store

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def engine(empty_url: str) -> Iterator[sa.Engine]:
    e = sa.create_engine(empty_url)
    yield e
    e.dispose()


def _differences(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, schema.metadata))


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def _revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _upgrade(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        migrate.upgrade(conn)


def _downgrade(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        migrate.downgrade(conn, "base")


def test_head_is_what_the_code_expects() -> None:
    assert migrate.head_revision() == schema.HEAD


def test_upgrade_builds_the_declared_schema(engine: sa.Engine) -> None:
    assert _tables(engine) == set()
    assert _revision(engine) is None
    _upgrade(engine)
    assert {"saga_events", "sagas"} <= _tables(engine)
    assert _revision(engine) == schema.HEAD
    assert _differences(engine) == []


def test_downgrade_to_base_and_upgrade_again(engine: sa.Engine) -> None:
    _upgrade(engine)
    _downgrade(engine)
    assert _tables(engine) <= {"alembic_version"}
    assert _revision(engine) is None
    # Against an empty database the comparison must find the tables missing:
    # it is not a check that passes whatever the schema.
    missing = {d[1].name for d in _differences(engine) if d[0] == "add_table"}
    assert missing == {"saga_events", "sagas", "saga_attempts"}
    _upgrade(engine)
    assert _revision(engine) == schema.HEAD
    assert _differences(engine) == []


def test_a_migrated_database_is_usable_and_a_store_creates_the_schema_itself(
    engine: sa.Engine, empty_url: str
) -> None:
    _upgrade(engine)
    with open_store(empty_url) as store:
        started = ev.SagaStarted(name="n", version=1, at=T0)
        assert store.create("s", [started], name="n", version=1, status=SagaStatus.RUNNING,
                            wake_at=None, now=T0)
        assert [e.seq for e in store.load("s")] == [1]
    _downgrade(engine)
    with open_store(empty_url) as store:  # an empty database: the store migrates it to head
        assert store.find() == []
    assert _revision(engine) == schema.HEAD
    assert _differences(engine) == []


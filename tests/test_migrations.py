"""The Alembic migrations build exactly the declared schema, and can be undone and redone."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from saga import SagaStatus
from saga import events as ev
from saga.store import migrate, schema
from saga.store.sql import SqlEventStore
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


_FROZEN_MAY_IMPORT = {"__future__", "sqlalchemy", "alembic"}
"""What a landed migration may import besides the standard library: never the library itself,
whose later changes would silently change what an old revision does."""


def _outside_imports(source: str) -> list[str]:
    """The imports in ``source`` of anything but the standard library, SQLAlchemy and Alembic
    (a relative import counts: it reaches into the package)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = ["." * node.level + (node.module or "")]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
              and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
              in ("__import__", "import_module")):
            names = ["<dynamic import>"]
        else:
            continue
        found += [n for n in names if not _frozen_may_import(n)]
    return found


def _frozen_may_import(module: str) -> bool:
    top = module.split(".", maxsplit=1)[0]
    return top in _FROZEN_MAY_IMPORT or top in sys.stdlib_module_names


def test_the_import_check_sees_the_library_and_relative_imports() -> None:
    assert _outside_imports("import json\nimport sqlalchemy as sa\nfrom alembic import op\n"
                            "from sqlalchemy.dialects import postgresql\n") == []
    assert _outside_imports("from saga.inspection.audit import event_hash\nimport saga.codec\n"
                            "from . import helpers\nimport pydantic\n") == [
        "saga.inspection.audit", "saga.codec", ".", "pydantic"]
    assert _outside_imports("import importlib\nimportlib.import_module('saga.text')\n") == [
        "<dynamic import>"]


def test_a_landed_migration_carries_its_own_code() -> None:
    """Every revision imports only the standard library, SQLAlchemy and Alembic."""
    versions = files("saga.migrations") / "versions"
    scripts = sorted((p for p in versions.iterdir() if p.name.endswith(".py")), key=lambda p: p.name)
    assert len(scripts) >= 4  # __init__ and the revisions 0001 to 0003 at least
    outside = {p.name: found for p in scripts if (found := _outside_imports(p.read_text()))}
    assert outside == {}


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
    assert missing == {"saga_events", "sagas", "saga_attempts", "saga_projections"}
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



def _hashes(conn: sa.Connection) -> dict[tuple[str, int], str]:
    e = schema.events.c
    return {(r.saga_id, r.seq): r.hash for r in conn.execute(sa.select(e.saga_id, e.seq, e.hash))}


def _v1_hashes(rows: list[dict[str, Any]]) -> dict[tuple[str, int], str]:
    """The hashes revision 0002 gives events (version 1: without their recording time)."""
    from saga.store.hashing import event_hash

    out: dict[tuple[str, int], str] = {}
    for r in rows:
        out[r["saga_id"], r["seq"]] = event_hash(r["saga_id"], r["seq"], r["type"], r["schema_version"],
                                                 r["data"], out.get((r["saga_id"], r["seq"] - 1)))
    return out


def test_an_existing_log_is_upgraded_with_hashes_attempts_and_failed_steps(
    engine: sa.Engine, empty_url: str, tmp_path: Any
) -> None:
    from tests.test_log_queries import _build

    built = _build(f"sqlite:///{tmp_path / 'source.db'}")  # a real log, written at head
    source, _, ids = next(built)
    assert isinstance(source, SqlEventStore)
    source.catch_up()
    event_cols = ["saga_id", "seq", "type", "schema_version", "data", "recorded_at", "writer"]
    saga_cols = [c.name for c in schema.sagas.c if c.name != "failed_step"]
    with source.engine.connect() as conn:
        old_events = [r._asdict() for r in conn.execute(
            sa.select(*[schema.events.c[c] for c in event_cols]).order_by(schema.events.c.position))]
        old_sagas = [r._asdict() for r in conn.execute(sa.select(*[schema.sagas.c[c] for c in saga_cols]))]
        hashes = _v1_hashes(old_events)
        failed = dict(conn.execute(sa.select(schema.sagas.c.saga_id, schema.sagas.c.failed_step)).all())
        kept = sorted(tuple(r) for r in conn.execute(sa.select(schema.attempts)))
    next(built, None)

    with engine.begin() as conn:  # the same log in a database at the first revision
        migrate.upgrade(conn, "0001")
        old = sa.MetaData()
        old.reflect(conn)
        conn.execute(old.tables["sagas"].insert(), old_sagas)
        conn.execute(old.tables["saga_events"].insert(), old_events)
    _upgrade(engine)
    assert _revision(engine) == schema.HEAD and _differences(engine) == []
    with engine.connect() as conn:
        assert _hashes(conn) == hashes
        assert dict(conn.execute(sa.select(schema.sagas.c.saga_id, schema.sagas.c.failed_step)).all()) \
            == failed
        upgraded = sorted(tuple(r) for r in conn.execute(sa.select(schema.attempts)))
    assert len(upgraded) == len(kept) > 0
    for a, b in zip(upgraded, kept, strict=True):
        assert a[:7] == b[:7] and a[8:] == b[8:], (a, b)  # the key, name, times, outcome, error
        assert (a[7] is None) == (b[7] is None) and (a[7] is None or abs(a[7] - b[7]) < 1e-6)
    with open_store(empty_url) as store:
        report = store.verify()
        assert report.ok and report.sagas == len(ids) and report.events == len(old_events)
        # a chain of version 1 goes on in version 3, the data's text as stored
        sid = old_sagas[0]["saga_id"]
        now = store.summary(sid).updated_at
        store.append(sid, store.summary(sid).last_seq, [ev.SagaCancelRequested(reason="x", at=now)],
                     status=store.summary(sid).status, wake_at=store.summary(sid).wake_at, now=now)
        report = store.verify()
        assert report.ok and report.events == len(old_events) + 1, report.lines()
        with engine.connect() as conn:
            versions = conn.execute(sa.select(schema.events.c.hash_version)
                                    .where(schema.events.c.saga_id == sid)
                                    .order_by(schema.events.c.seq)).scalars().all()
        assert set(versions[:-1]) == {1} and versions[-1] == 3
    with engine.begin() as conn:  # down again, with the log in it, and up
        migrate.downgrade(conn, "0001")
    _upgrade(engine)
    assert _differences(engine) == []

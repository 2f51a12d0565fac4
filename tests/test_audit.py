"""Tamper evidence: hash chains per saga, the head digest, and what verify names when rows change.

The log's table gets its ``hash`` column in a migration; until then these
tests keep a hashed copy of a real log (written by a coordinator, read back
through SQL on SQLite and PostgreSQL) and tamper with the copy by raw SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from saga import Coordinator, EventStore, PermanentError, Retry, Saga, StepContext, VirtualClock
from saga.store.audit import AuditRow, Head, HeadBuilder, verify
from saga.store.hashing import canonical_json, event_hash
from saga.store.schema import JSONData

copy_metadata = sa.MetaData()
audited = sa.Table(
    "audited_events",
    copy_metadata,
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("saga_id", sa.String(200), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("schema_version", sa.SmallInteger, nullable=False),
    sa.Column("data", JSONData, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
audited_sagas = sa.Table(
    "audited_sagas",
    copy_metadata,
    sa.Column("saga_id", sa.String(200), primary_key=True),
    sa.Column("last_seq", sa.Integer, nullable=False),
)


def _saga() -> Saga:
    saga = Saga("trip")

    @saga.step(retry=Retry.fixed(1.0, attempts=3))
    def book(ctx: StepContext) -> dict[str, Any]:
        if ctx.attempt == 1 and ctx.input.get("flaky"):
            raise ConnectionError("busy")
        return {"ref": f"B-{ctx.saga_id}", "note": "é ✓ 漢字", "amount": 12.5}

    @book.compensate
    def unbook(ctx: StepContext) -> None:
        return None

    @saga.step
    def pay(ctx: StepContext) -> str:
        if ctx.input.get("declined"):
            raise PermanentError("card declined")
        return "paid"

    return saga


SAGA_IDS = ["a-1", "B-2", "b-3", "z", "Ä-umlaut", "0-first"]


def _log(url: str) -> None:
    clock = VirtualClock()
    store = EventStore(url)
    try:
        coordinator = Coordinator(store, [_saga()], clock=clock, poll_interval=60.0)
        for i, saga_id in enumerate(SAGA_IDS):
            coordinator.start("trip", {"flaky": i % 2 == 0, "declined": i % 3 == 0}, saga_id=saga_id)
        for _ in range(5):
            coordinator.work(until_idle=True)
            clock.advance(1.0)
    finally:
        store.close()


def _order(engine: sa.Engine) -> tuple[Any, ...]:
    """Saga ids in code point order: binary on SQLite, the "C" collation on PostgreSQL."""
    saga_id: Any = audited.c.saga_id
    if engine.dialect.name == "postgresql":
        saga_id = saga_id.collate("C")
    return (saga_id, audited.c.seq)


@pytest.fixture
def engine(sql_url: str) -> Iterator[sa.Engine]:
    """A real log of six sagas, and a hashed copy of it (``audited_events``, ``audited_sagas``)."""
    _log(sql_url)
    engine = sa.create_engine(sql_url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        copy_metadata.create_all(conn)
        rows = conn.execute(sa.text(
            "SELECT saga_id, seq, type, schema_version, data FROM saga_events ORDER BY saga_id, seq"
        )).all()
        previous: dict[str, str | None] = {}
        copies = []
        for r in rows:
            data = r.data if isinstance(r.data, dict) else json.loads(r.data)
            h = event_hash(r.saga_id, r.seq, r.type, r.schema_version, data, previous.get(r.saga_id))
            previous[r.saga_id] = h
            copies.append({"saga_id": r.saga_id, "seq": r.seq, "type": r.type,
                           "schema_version": r.schema_version, "data": data, "hash": h})
        conn.execute(audited.insert(), copies)
        conn.execute(sa.text(
            "INSERT INTO audited_sagas (saga_id, last_seq) SELECT saga_id, last_seq FROM sagas"))
    yield engine
    engine.dispose()


def _verify(engine: sa.Engine, *, head: Head | None = None, index: bool = True) -> Any:
    with engine.connect() as conn:
        # hashed as the log was before recording times were hashed (version 1)
        rows = conn.execute(sa.select(audited.c.position, audited.c.saga_id, audited.c.seq,
                                      audited.c.type, audited.c.schema_version, audited.c.data,
                                      audited.c.hash, sa.literal(0.0).label("recorded_at"),
                                      sa.literal(1).label("hash_version"))
                            .order_by(*_order(engine)))
        sagas_rows = None
        if index:
            key: Any = audited_sagas.c.saga_id
            if engine.dialect.name == "postgresql":
                key = key.collate("C")
            sagas_rows = conn.execute(sa.select(audited_sagas.c.saga_id, audited_sagas.c.last_seq)
                                      .order_by(key))
        return verify(rows, sagas=sagas_rows, head=head)


def _exec(engine: sa.Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM audited_events")).scalar_one())


def test_an_untouched_log_verifies_and_counts_what_it_checked(engine: sa.Engine) -> None:
    report = _verify(engine)
    assert report.ok and report.problem is None
    assert report.sagas == len(SAGA_IDS) and report.events == _count(engine)
    assert report.summary() == f"ok: {len(SAGA_IDS)} sagas, {_count(engine)} events verified"
    with engine.connect() as conn:
        heads = conn.execute(sa.text(
            "SELECT e.saga_id, e.seq, e.hash FROM audited_events e JOIN audited_sagas s "
            "ON s.saga_id = e.saga_id AND s.last_seq = e.seq")).all()
        top = conn.execute(sa.text("SELECT max(position) FROM audited_events")).scalar_one()
    expected = HeadBuilder()
    for h in sorted((r.saga_id, r.seq, r.hash) for r in heads):
        expected.add(*h)
    assert report.head == expected.head(top)
    assert _verify(engine, head=report.head).ok


def test_an_edited_row_is_named_by_saga_and_seq(engine: sa.Engine) -> None:
    _exec(engine, "UPDATE audited_events SET data = :d WHERE saga_id = 'b-3' AND seq = 3",
          d='{"at": "2026-01-01T00:00:00Z", "step": "book", "attempt": 9}')
    report = _verify(engine)
    assert not report.ok and report.problem is not None
    assert (report.problem.kind, report.problem.saga_id, report.problem.seq) == ("changed", "b-3", 3)
    assert "saga b-3: seq 3" in report.summary()


def test_a_deleted_row_is_named(engine: sa.Engine) -> None:
    _exec(engine, "DELETE FROM audited_events WHERE saga_id = 'a-1' AND seq = 2")
    problem = _verify(engine).problem
    assert problem is not None and (problem.kind, problem.saga_id, problem.seq) == ("removed", "a-1", 2)


def test_two_swapped_rows_are_caught_at_the_first(engine: sa.Engine) -> None:
    _exec(engine, "UPDATE audited_events SET seq = -1 WHERE saga_id = 'z' AND seq = 2")
    _exec(engine, "UPDATE audited_events SET seq = 2 WHERE saga_id = 'z' AND seq = 4")
    _exec(engine, "UPDATE audited_events SET seq = 4 WHERE saga_id = 'z' AND seq = -1")
    problem = _verify(engine).problem
    assert problem is not None and (problem.kind, problem.saga_id, problem.seq) == ("changed", "z", 2)


def test_a_cut_off_last_event_is_caught_by_the_index_row_and_by_the_head(engine: sa.Engine) -> None:
    head = _verify(engine).head
    with engine.connect() as conn:
        last = conn.execute(sa.text(
            "SELECT last_seq FROM audited_sagas WHERE saga_id = 'Ä-umlaut'")).scalar_one()
    _exec(engine, "DELETE FROM audited_events WHERE saga_id = 'Ä-umlaut' AND seq = :s", s=last)
    problem = _verify(engine).problem
    assert problem is not None
    assert (problem.kind, problem.saga_id, problem.seq) == ("truncated", "Ä-umlaut", last)
    # without the index rows the chain alone cannot tell; the head digest kept elsewhere can
    assert _verify(engine, index=False).ok
    problem = _verify(engine, index=False, head=head).problem
    assert problem is not None and problem.kind == "head" and problem.saga_id is None


def test_a_saga_deleted_whole_is_caught(engine: sa.Engine) -> None:
    head = _verify(engine).head
    _exec(engine, "DELETE FROM audited_events WHERE saga_id = 'B-2'")
    problem = _verify(engine).problem
    assert problem is not None and (problem.kind, problem.saga_id, problem.seq) == ("truncated", "B-2", 1)
    _exec(engine, "DELETE FROM audited_sagas WHERE saga_id = 'B-2'")
    assert _verify(engine).ok
    problem = _verify(engine, head=head).problem
    assert problem is not None and problem.kind == "head"


NUMBERS: dict[str, Any] = {
    "whole_float": 1.0, "big_float": 1e16, "tiny": 1.5e-10, "tenth": 0.1, "huge_int": 2**70,
    "negative": -2.5e-7, "text": "é ✓ 漢字 \u00ff", "nested": [{"b": 1, "a": [0.5, 3.0]}], "none": None,
}


def test_a_hash_survives_the_databases_json_round_trip(sql_url: str) -> None:
    """PostgreSQL's JSONB rewrites numbers (1e16 comes back as 10000000000000000) and key order."""
    engine = sa.create_engine(sql_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            copy_metadata.create_all(conn)
            conn.execute(audited.insert(), [{"saga_id": "n", "seq": 1, "type": "T", "schema_version": 1,
                                             "data": NUMBERS, "hash": ""}])
            stored = conn.execute(sa.select(audited.c.data)).scalar_one()
    finally:
        engine.dispose()
    assert event_hash("n", 1, "T", 1, stored, None) == event_hash("n", 1, "T", 1, NUMBERS, None)


def test_rows_out_of_saga_order_are_refused() -> None:
    rows = [AuditRow("b", 1, "T", 1, {}, event_hash("b", 1, "T", 1, {}, None)),
            AuditRow("a", 1, "T", 1, {}, event_hash("a", 1, "T", 1, {}, None))]
    with pytest.raises(ValueError, match="code point order"):
        verify(rows)
    head = HeadBuilder()
    head.add("b", 1, "x")
    with pytest.raises(ValueError, match="code point order"):
        head.add("a", 1, "y")


def test_a_repeated_seq_is_reported_as_reordered() -> None:
    h1 = event_hash("s", 1, "T", 1, {}, None)
    rows = [AuditRow("s", 1, "T", 1, {}, h1), AuditRow("s", 1, "T", 1, {}, h1)]
    problem = verify(rows).problem
    assert problem is not None and (problem.kind, problem.saga_id, problem.seq) == ("reordered", "s", 1)


def test_canonical_json_ignores_key_order_and_keeps_unicode() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == canonical_json({"a": [1, "é"], "b": 1})
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    assert canonical_json([1.0, 1e16, 0.5]) == canonical_json([1, 10**16, 0.5])
    assert canonical_json([1.0, 1e16, 0.5]) == b"[1,10000000000000000,0.5]"
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                  max_size=3), max_leaves=8)


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=10), st.integers(1, 10**6), st.text(max_size=10), st.integers(1, 5),
       _json, st.none() | st.text(min_size=64, max_size=64, alphabet="0123456789abcdef"), st.data())
def test_the_hash_changes_when_any_field_changes(  # noqa: PLR0917
    saga_id: str, seq: int, type_: str, version: int, data: Any, previous: str | None, draw: st.DataObject
) -> None:
    fields = [saga_id, seq, type_, version, data, previous]
    h = event_hash(*fields)
    assert len(h) == 64 and h == event_hash(*fields)
    i = draw.draw(st.integers(0, 5))
    changed = list(fields)
    changed[i] = {0: saga_id + "x", 1: seq + 1, 2: type_ + "x", 3: version + 1, 4: [data],
                  5: "f" * 64 if previous != "f" * 64 else None}[i]
    assert event_hash(*changed) != h


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1.0, -0.0, 1e16, 1.5e300, 2.5, 1e-7])
    | st.text() | st.sampled_from(["x.0,", "a.0]", "1e+5", "ends.0", "ü\u202e"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children,
                                                                       max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(saga_id=st.text(min_size=1, max_size=8), seq=st.integers(1, 10**6), data=_json_values,
       previous=st.none() | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
def test_the_hash_is_sha256_over_the_canonical_json_of_its_fields(
    saga_id: str, seq: int, data: Any, previous: str | None
) -> None:
    import hashlib

    body = canonical_json([saga_id, seq, "StepSucceeded", 1, data, previous])
    assert event_hash(saga_id, seq, "StepSucceeded", 1, data, previous) == hashlib.sha256(body).hexdigest()
    at = 1_790_000_000.123456  # version 2: the recording time too, in whole microseconds
    body = canonical_json([saga_id, seq, "StepSucceeded", 1, data, previous, 1_790_000_000_123_456])
    assert event_hash(saga_id, seq, "StepSucceeded", 1, data, previous, at) \
        == hashlib.sha256(body).hexdigest()

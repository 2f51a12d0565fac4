"""The event store contract (:mod:`saga.testing.contract`) on every backend: in memory, in a
SQLite file and in PostgreSQL; and what only some backends promise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from saga import EventStore, InvalidInput, SagaNotFound, SagaStatus
from saga import events as ev
from saga._engine.reading import view as read_view
from saga.store.base import EventLog
from saga.testing.contract import EventLogContract
from saga.testing.contract_write import append, at, attempt, create


class TestMemory(EventLogContract):
    def make_store(self) -> EventLog:
        return EventStore("memory://")


class TestSQLite(EventLogContract):
    @pytest.fixture
    def store(self, sqlite_url: str) -> Iterator[EventLog]:
        with EventStore(sqlite_url) as store:
            yield store


@pytest.mark.postgres
class TestPostgres(EventLogContract):
    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[EventLog]:
        with EventStore(postgres_url) as store:
            yield store


def test_the_coordinators_view_of_a_stored_log(store: EventStore) -> None:
    create(store, "a")
    append(store, "a", 1, [attempt("x"), ev.StepSucceeded(step="x", attempt=1, result={"n": 1},
                                                           at=at(1))])
    append(store, "a", 3, [ev.SagaCompleted(at=at(2))], status=SagaStatus.COMPLETED, wake=None)
    view = read_view(store, "a")
    assert view.status is SagaStatus.COMPLETED and view.results == {"x": {"n": 1}} and view.seq == 4
    assert [e.to_json()["seq"] for e in store.load("a")] == [1, 2, 3, 4]


def test_only_postgresql_reads_the_events_with_the_claim(store: EventStore) -> None:
    create(store, "a")
    append(store, "a", 1, [attempt("x")])
    [(saga_id, events)] = store.claim_loaded("w", at(0), until=at(30))
    assert saga_id == "a"
    if type(store).__name__ == "PostgresEventStore":
        assert events is not None and [e.seq for e in events] == [1, 2]
    else:
        assert events is None  # the caller loads them


def test_each_memory_store_is_a_log_of_its_own() -> None:
    first, second = EventStore("memory://"), EventStore("memory://")
    assert create(first, "a")
    with pytest.raises(SagaNotFound):
        second.load("a")
    assert create(second, "a")  # the same id is free in the other log
    with pytest.raises(InvalidInput):
        EventStore("memory://somewhere")


def test_a_memory_store_opened_to_read_a_log_refuses() -> None:
    with pytest.raises(SagaNotFound, match="no saga log in memory://"):
        EventStore("memory://", schema="require")


def test_a_contract_without_a_store_says_what_to_override() -> None:
    with pytest.raises(NotImplementedError, match="must override make_store"):
        EventLogContract().make_store()

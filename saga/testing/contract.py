"""The store contract as a test suite: what every :class:`~saga.store.EventLog` promises, for
an application to run against its own store, as this library runs it against its own.

Subclass :class:`EventLogContract` in a test module (its name starting with
``Test``) and say how to open a fresh, empty store for each test, either by
overriding :meth:`~EventLogContract.make_store`::

    from saga.testing import EventLogContract

    class TestMyLog(EventLogContract):
        def make_store(self) -> MyLog:
            return MyLog(...)

or, when the store needs other fixtures, by overriding the ``store`` fixture::

    class TestMyLogOnPostgres(EventLogContract):
        @pytest.fixture
        def store(self, postgresql_url: str) -> Iterator[MyLog]:
            with MyLog(postgresql_url) as log:
                yield log

Each test method is a plain pytest test taking ``store``; pytest reports
them under the subclass. The store is closed after each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from saga.store.base import EventLog
from saga.testing.contract_read import ReadSideContract
from saga.testing.contract_write import WriteSideContract

__all__ = ["EventLogContract"]


class EventLogContract(WriteSideContract, ReadSideContract):
    """The tests every event store passes, written once (as ``eventsourcing`` ships its
    recorder test cases).

    The write side (:class:`~saga.testing.contract_write.WriteSideContract`):
    ``create`` (once per id), ``append`` after the expected ``seq`` (else
    ``ConcurrencyError``), the lease fence (``LeaseHeld`` while another owner's
    lease is live; operators' appends pass), ``renew`` and ``release``,
    ``find``, ``due`` and ``next_wake``, an earlier wake-up kept,
    ``claim``/``claim_loaded`` taking each due saga once (from many threads
    too), ``load`` in pages, the payload limit (for a store with a
    ``max_payload``), and ``SagaNotFound`` for an unknown id.

    The read side (:class:`~saga.testing.contract_read.ReadSideContract`), over
    one small log with every kind of outcome: ``list_sagas`` by every filter,
    newest first, paged by a cursor; ``stats`` with their counts, nearest-rank
    percentiles and commonest errors, by name and since a time; ``export`` in
    the order appended; each event's hash chained to the previous one of its
    saga (:func:`saga.store.hashing.stored_event_hash` over its data as stored and its
    recording time);
    ``verify`` and ``head``, a head still holding once the log has grown; and
    ``status_counts``.

    Times the tests give (``now``, each event's ``at``) are in 2030, on the
    coordinator's clock; recording times are the store's own.
    """

    def make_store(self) -> EventLog:
        """A fresh, empty store (override this, or the ``store`` fixture)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override make_store() or the store fixture")

    @pytest.fixture
    def store(self) -> Iterator[EventLog]:
        """A fresh store from :meth:`make_store`, closed after the test."""
        store = self.make_store()
        try:
            yield store
        finally:
            store.close()

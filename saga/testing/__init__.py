"""Testing sagas: a virtual clock, a coordinator with fault injection, and pytest fixtures.

Installing the package registers a pytest plugin (:mod:`saga.testing.plugin`)
that provides three fixtures:

- ``saga_store``: a fresh :class:`~saga.EventStore` per test (in memory, or
  a fresh PostgreSQL database when ``$SAGA_TEST_POSTGRES_URL`` is set; a
  suite overrides ``saga_store_url`` to pick another, e.g. a SQLite file);
- ``saga_clock``: a :class:`SagaTestClock`, a :class:`~saga.VirtualClock`;
- ``saga_coordinator``: a :class:`SagaTestCoordinator` on both, with
  ``run_until_rest``, ``fail``, ``hang`` and ``assert_history``.
"""

from saga.testing.coordinator import SagaDidNotRest, SagaTestCoordinator, load_events
from saga.testing.injection import Fault, InjectedFailure
from saga.testing.limits import SagaTestClock

__all__ = [
    "Fault",
    "InjectedFailure",
    "SagaDidNotRest",
    "SagaTestClock",
    "SagaTestCoordinator",
    "load_events",
]

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

from typing import TYPE_CHECKING, Any

from saga.testing.coordinator import SagaDidNotRest, SagaTestCoordinator, load_events
from saga.testing.injection import Fault, InjectedFailure
from saga.testing.limits import SagaTestClock

if TYPE_CHECKING:
    from saga.testing.contract import EventLogContract

__all__ = [
    "EventLogContract",
    "Fault",
    "InjectedFailure",
    "SagaDidNotRest",
    "SagaTestClock",
    "SagaTestCoordinator",
    "load_events",
]


def __getattr__(name: str) -> Any:
    if name == "EventLogContract":  # a pytest suite: pytest is imported only when it is asked for
        from saga.testing.contract import EventLogContract

        return EventLogContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Reading a saga from its log: load the events, fold them. Written once, used by every reader.

The store returns events, never views; the coordinator, the operator
functions and the command line all go through these two functions.
"""

from __future__ import annotations

from saga.errors import SagaNotFound
from saga.state import SagaState, SagaView, fold
from saga.store.base import EventLog

__all__ = ["load_state", "view"]


def load_state(store: EventLog, saga_id: str) -> SagaState:
    """The saga's state, folded from every event of its log.

    Raises :class:`~saga.SagaNotFound` if no saga has this id, and
    :class:`~saga.StoreError` if the store fails or an event cannot be read.
    """
    state = fold(saga_id, (e.event for e in store.load(saga_id)))
    if state.seq == 0:  # a store that returns an empty log for an unknown id
        raise SagaNotFound(f"no saga has id {saga_id!r}")
    return state


def view(store: EventLog, saga_id: str) -> SagaView:
    """What the saga's log says about it now (as :func:`load_state`, frozen for users)."""
    return load_state(store, saga_id).view()

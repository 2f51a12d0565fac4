"""Event stores: one interface, opened by URL; one module (or package) per database."""

from saga.store.base import EventLog, EventStore, SagaSummary, StoredEvent
from saga.store.registry import DEFAULT_URL, default_url
from saga.store.urls import redact

__all__ = [
    "DEFAULT_URL", "EventLog", "EventStore", "SagaSummary", "StoredEvent", "default_url", "redact",
]

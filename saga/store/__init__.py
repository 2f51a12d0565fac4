"""Event stores: one interface, opened by URL; one module (or package) per database."""

from .base import EventLog, EventStore, SagaSummary, StoredEvent
from .registry import DEFAULT_URL, default_url
from .urls import redact

__all__ = [
    "DEFAULT_URL", "EventLog", "EventStore", "SagaSummary", "StoredEvent", "default_url", "redact",
]

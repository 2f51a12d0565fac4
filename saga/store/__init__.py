"""Event stores: one interface, one module per database."""

from .base import EventStore, SagaSummary, StoredEvent
from .factory import DEFAULT_URL, default_url

__all__ = ["DEFAULT_URL", "EventStore", "SagaSummary", "StoredEvent", "default_url"]

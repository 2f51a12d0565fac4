"""Event stores: one interface, one module per database."""

from .base import EventLog, SagaSummary, StoredEvent
from .factory import DEFAULT_URL, default_url
from .sql import EventStore

__all__ = ["DEFAULT_URL", "EventLog", "EventStore", "SagaSummary", "StoredEvent", "default_url"]

"""Shared fixtures: real databases, one per test, and a virtual clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from saga import EventStore, VirtualClock


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file for this test."""
    return f"sqlite:///{tmp_path / 'saga.db'}"


@pytest.fixture
def clock() -> VirtualClock:
    """A clock that only moves when the code under test sleeps."""
    return VirtualClock()


@pytest.fixture(params=["sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each backend (the store contract runs on every one)."""
    return f"sqlite:///{tmp_path / 'saga.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    """An event store on a fresh database."""
    s = EventStore(store_url)
    yield s
    s.close()

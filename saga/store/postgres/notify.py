"""Waking idle workers: a wake-up a worker waits on, and PostgreSQL's LISTEN/NOTIFY behind it.

A store notifies, inside the transaction that makes a saga due with no one
holding it (a new saga, an operator's cancel or retry), on the channel
:data:`CHANNEL`. PostgreSQL delivers the notification to listeners when
that transaction commits, never before, so a woken worker always finds the
saga. Each process listens on one dedicated connection (not from the pool)
and sets every subscribed :class:`Wakeup`. If the connection drops, the
listener reconnects and wakes everyone once, since a notification may have
been missed; workers also poll, so a lost notification delays work by at
most one polling period and never loses it.
"""

from __future__ import annotations

import logging
import threading
import weakref

import psycopg
from psycopg import sql

from saga.clock import Wakeup

__all__ = ["CHANNEL", "PostgresListener"]

CHANNEL = "saga_due"
"""The notification channel a store signals when a saga becomes due."""

log = logging.getLogger("saga.store")

class PostgresListener:
    """One LISTEN connection per store, waking every :class:`Wakeup` it hands out.

    ``conninfo`` is a libpq connection string or URI. The listening thread
    starts with the first subscription and stops with :meth:`close`.
    """

    def __init__(self, conninfo: str, channel: str = CHANNEL) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._subscribers: weakref.WeakSet[Wakeup] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._listening = threading.Event()

    def subscribe(self) -> Wakeup:
        """A new wake-up set on every notification (held weakly: keep a reference)."""
        wakeup = Wakeup()
        with self._lock:
            self._subscribers.add(wakeup)
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="saga-listener", daemon=True
                )
                self._thread.start()
        return wakeup

    def listening(self, timeout: float) -> bool:
        """Wait until the listener's ``LISTEN`` is in place (``False`` on timeout)."""
        return self._listening.wait(timeout)

    def _wake_all(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for w in subscribers:
            w.notify()

    def _run(self) -> None:
        delay = 0.05
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    self._listening.set()
                    self._wake_all()  # something may have become due while we were not listening
                    delay = 0.05
                    while not self._closed.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self._wake_all()
            except psycopg.Error as e:
                self._listening.clear()
                if self._closed.is_set():
                    return
                log.warning("listening for due sagas failed, reconnecting in %.2fs: %s", delay, e)
                self._closed.wait(delay)
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        """Stop listening (the thread ends within a second)."""
        self._closed.set()

"""Group commit: appends that arrive while another is committing share the next transaction.

When one process drives many sagas at once, each drive appends a few events
and waits for the commit before running its next step. Committing each
append on its own makes the database's per-transaction cost the limit;
:class:`GroupCommit` instead lets whichever caller finds no commit in
progress lead: it takes every append queued so far into one transaction,
and hands the lead to the first caller queued behind it when done. No
timer is involved: a lone append commits at once (with the plain append's
statements, which are cheaper for one), and batches grow with the number of
drives waiting, never beyond ``max_batch``.

Each append keeps its own fence (its saga's ``seq`` and lease, checked per
row in the batch's statement) and its own verdict: one refused append does
not fail the others in the batch. If the batch's transaction fails as a
whole, every append in it is run again on its own, so that each caller sees
exactly the error (or the safe retry) it would have seen without batching.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["GroupCommit", "Pending"]


class Pending:
    """One append waiting for a batch: its saga, what to write, and (after the flush) its verdict."""

    __slots__ = ("_done", "error", "key", "lead", "payload", "solo")

    def __init__(self, key: str, payload: Any) -> None:
        self.key = key
        self.payload = payload
        self.error: BaseException | None = None
        self.solo = False
        """Set by the flush: this append was not committed and must run in a transaction of its own."""
        self.lead = False
        self._done = threading.Lock()
        self._done.acquire()


class GroupCommit:
    """Batches concurrent appends; ``flush(batch)`` commits one batch and sets each verdict.

    ``flush`` must not raise: it records each item's outcome on the item
    (``error``, or ``solo`` to have the caller append on its own).
    """

    def __init__(self, flush: Callable[[list[Pending]], None], *, max_batch: int = 200) -> None:
        self._flush = flush
        self._max = max_batch
        self._lock = threading.Lock()
        self._queue: list[Pending] = []
        self._busy = False

    def submit(self, item: Pending) -> None:
        """Queue ``item`` and return once its batch is done; raises the item's own error."""
        with self._lock:
            self._queue.append(item)
            lead = not self._busy
            self._busy = True
        if not lead:
            item._done.acquire()  # released when our batch is done, or when we are to lead
            lead = item.lead
        if lead:
            self._lead(item)
        if item.error is not None:
            raise item.error

    def _lead(self, me: Pending) -> None:
        with self._lock:
            batch: list[Pending] = []
            rest: list[Pending] = []
            keys: set[str] = set()
            for it in self._queue:
                # Two appends to one saga never share a batch: the second waits for the next.
                if it.key in keys or len(batch) >= self._max:
                    rest.append(it)
                else:
                    keys.add(it.key)
                    batch.append(it)
            self._queue = rest
        try:
            self._flush(batch)
        except BaseException as e:  # flush does not raise; if it does, no item was committed
            for it in batch:
                it.error, it.solo = None, True
            if not isinstance(e, Exception):
                raise
        finally:
            with self._lock:
                nxt = self._queue[0] if self._queue else None
                if nxt is None:
                    self._busy = False
                else:
                    nxt.lead = True
            for it in batch:
                if it is not me:
                    it._done.release()
            if nxt is not None:
                nxt._done.release()

"""Tamper evidence, as the inspection commands read it: the hash chain every append writes
(:mod:`saga.store.hashing`) and its check against the log and a head (:mod:`saga.store.audit`).

A store verifies its own log (:meth:`saga.store.EventLog.verify`,
:meth:`saga.store.EventLog.head`); this module gathers the names a reader of
a report needs in one place.
"""

from __future__ import annotations

from saga.store.audit import (
    AuditProblem,
    AuditReport,
    AuditRow,
    ChainedRow,
    Head,
    HeadBuilder,
    IndexRow,
    verify,
)
from saga.store.hashing import HASH_VERSION, canonical_json, canonical_text, event_hash, recorded_micros

__all__ = [
    "HASH_VERSION",
    "AuditProblem",
    "AuditReport",
    "AuditRow",
    "ChainedRow",
    "Head",
    "HeadBuilder",
    "IndexRow",
    "canonical_json",
    "canonical_text",
    "event_hash",
    "recorded_micros",
    "verify",
]

"""What a measured part of a benchmark costs the database, counted from outside the code measured.

The side-by-side benchmarks (``against_commit.py``, ``against_dbos.py``) run
the same workload on two libraries, or on two versions of one, and want the
same ruler for both: nothing here asks the library under test anything.

- PostgreSQL: ``pg_stat_database.xact_commit`` of the scratch database (every
  committed transaction, read-only ones included; a new connection counts one)
  and the server's WAL position (``pg_current_wal_lsn``). The statistics are
  flushed lazily (a busy backend holds its counts for up to 10 s), but always
  when a backend exits, so a reading waits until no client is connected to the
  database: it is exact. The WAL position is the server's, so another
  database's work shows in it; a reading also counts the other databases'
  commits and the databases created, for a warning. So the WAL of the
  database alone is read too, with pg_walinspect: the records touching its
  relations and every record of the transactions that did (a temporary
  replication slot keeps the server from recycling that WAL before it is
  read). It leaves out page headers and padding: a few percent below the
  position's difference when nothing else runs.
- SQLite: :func:`instrument_sqlite` wraps ``sqlite3.connect`` before the
  library opens its file: every connection gets ``PRAGMA
  wal_autocheckpoint=0`` (the WAL only grows) and a trace callback that counts
  ``COMMIT`` statements; WAL frames are read from the size of the ``-wal``
  file.

Imports nothing of ``saga``: the DBOS side runs it in a virtual environment of
its own.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, LiteralString, Protocol

import psycopg
from psycopg.conninfo import make_conninfo

WAL_HEADER = 32
"""Bytes at the head of a SQLite ``-wal`` file; each frame adds 24 bytes to its page."""


@dataclass(frozen=True, slots=True)
class Cost:
    """What an interval cost: the difference of two :class:`Reading`."""

    commits: int
    """Committed transactions: ``xact_commit`` (PostgreSQL), ``COMMIT`` statements (SQLite)."""
    wal: int
    """WAL bytes written on the server (PostgreSQL), WAL frames in the file (SQLite)."""
    other_commits: int = 0
    """PostgreSQL: commits in the server's other databases (its ``postgres`` database aside)."""
    databases_created: bool = False
    """PostgreSQL: someone created a database on the server meanwhile."""
    own_wal: int | None = None
    """PostgreSQL: bytes of the WAL records of this database alone (None: not known)."""

    def __sub__(self, other: Cost) -> Cost:
        """This cost less another's commits and WAL (an overhead measured apart)."""
        own = (None if self.own_wal is None or other.own_wal is None
               else self.own_wal - other.own_wal)
        return replace(self, commits=self.commits - other.commits, wal=self.wal - other.wal,
                       own_wal=own)

    def less_commits(self, n: int) -> Cost:
        """The same interval without ``n`` commits that the benchmark itself made."""
        return replace(self, commits=self.commits - n)


@dataclass(frozen=True, slots=True)
class Reading:
    """Counters at one moment."""

    commits: int
    wal: int
    others: tuple[tuple[str, int], ...] = ()
    """PostgreSQL: commits of each of the server's other databases (``postgres`` aside)."""
    lsn: str = ""
    """PostgreSQL: the WAL position ``wal`` stands for, as the server writes it."""
    newest_database: int = 0
    """PostgreSQL: the highest database OID; it grows when anyone creates a database."""

    def __sub__(self, before: Reading) -> Cost:
        then = dict(before.others)
        # A database dropped meanwhile leaves the sums: count each database's own growth.
        others = sum(max(0, n - then.get(name, 0)) for name, n in self.others)
        return Cost(self.commits - before.commits, self.wal - before.wal, others,
                    self.newest_database > before.newest_database)


class Run:
    """What one workload measured: its figures, in order (each a name and a value), and
    warnings about them; a child process prints them for the side-by-side table."""

    def __init__(self, wal_unit: str) -> None:
        self.wal_unit = wal_unit
        """How the WAL is counted ("pages", "bytes"); "" when it is not."""
        self.figures: list[tuple[str, float]] = []
        self.warnings: list[str] = []
        self.other_commits = 0
        """Commits in the server's other databases during the measured parts (PostgreSQL)."""
        self.databases_created = 0
        """Measured parts during which someone created a database on the server."""

    def add(self, label: str, n: int, seconds: float, cost: Cost, overhead: Cost | None = None
            ) -> None:
        """Record ``n`` sagas (workflows) in ``seconds``, and their commits and WAL per saga
        (less ``overhead``'s)."""
        prefix = f"{label} " if label else ""
        net = cost if overhead is None else cost - overhead
        self.figures += [(f"{prefix}sagas/s", n / seconds), (f"{prefix}commits/saga", net.commits / n)]
        if self.wal_unit:
            self.figures.append((f"{prefix}WAL {self.wal_unit}/saga", net.wal / n))
        if net.own_wal is not None:
            self.figures.append((f"{prefix}own WAL bytes/saga", net.own_wal / n))
        self.other_commits += cost.other_commits
        self.databases_created += cost.databases_created


class Meter(Protocol):
    """Reads a database's counters; how the library under test is opened and closed around it
    depends on :attr:`reads_open`."""

    reads_open: bool
    """True: read while the library's connections are open (SQLite removes its WAL file when
    the last connection closes). False: read after they are closed (PostgreSQL's counts of a
    backend are complete only when it exits)."""

    def read(self) -> Reading:
        """The counters now."""
        ...

    def cost(self, before: Reading, after: Reading) -> Cost:
        """What the interval between two readings cost."""
        ...


# -- PostgreSQL --------------------------------------------------------------------------------


class PgMeter:
    """Counters of the database ``database``, read from the server's ``postgres`` database (so
    that reading them does not count in them)."""

    reads_open = False

    def __init__(self, admin_conninfo: str, database: str, *, settle_timeout: float = 60.0) -> None:
        self.database = database
        self.settle_timeout = settle_timeout
        self.unsettled = 0
        """How many readings gave up waiting for the database's clients to leave."""
        self.notes: list[str] = []
        """What the meter could not measure, for the reader."""
        self._conn = psycopg.connect(admin_conninfo, autocommit=True)
        self._conninfo = make_conninfo(admin_conninfo, dbname=database)
        self._inspect_ready = False
        self._inspect_failed = False
        # A temporary slot (dropped with this connection) keeps the server from recycling the
        # WAL of an interval before it is read: another database's DROP DATABASE checkpoints.
        self._slot: str | None = f"saga_bench_meter_{os.getpid()}"
        try:
            self._conn.execute("SELECT pg_create_physical_replication_slot(%s, true, true)",
                               (self._slot,))
        except psycopg.Error as e:
            self._slot = None
            self.notes.append(f"no replication slot to keep the WAL for reading: {str(e).strip()}")

    def settle(self) -> bool:
        """Wait until no client is connected to the database (each one's counts are flushed
        when it exits); False if some still were after ``settle_timeout`` seconds."""
        deadline = time.monotonic() + self.settle_timeout
        while True:
            row = self._conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = %s AND backend_type = 'client backend'", (self.database,)
            ).fetchone()
            if row is not None and row[0] == 0:
                return True
            if time.monotonic() > deadline:
                self.unsettled += 1
                return False
            time.sleep(0.02)

    def read(self) -> Reading:
        self.settle()
        row = self._conn.execute(
            "SELECT pg_wal_lsn_diff(lsn, '0/0'), (SELECT max(oid) FROM pg_database), lsn::text"
            " FROM pg_current_wal_lsn() AS lsn"
        ).fetchone()
        assert row is not None
        commits: dict[Any, Any] = dict(self._conn.execute(
            "SELECT datname, xact_commit FROM pg_stat_database"
            " WHERE datname IS NOT NULL AND datname <> 'postgres'"
        ).fetchall())
        mine = int(commits.pop(self.database, 0))
        others = tuple(sorted((str(k), int(v)) for k, v in commits.items()))
        return Reading(mine, int(row[0]), others, str(row[2]), int(row[1]))

    def cost(self, before: Reading, after: Reading) -> Cost:
        own = self.own_wal(before.lsn, after.lsn)
        if self._slot is not None:  # the WAL up to here is read: let the server recycle it
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("SELECT pg_replication_slot_advance(%s, least(%s::pg_lsn,"
                                   " pg_current_wal_flush_lsn()))", (self._slot, after.lsn))
        return replace(after - before, own_wal=own)

    def own_wal(self, start: str, end: str) -> int | None:
        """Bytes of the WAL records between two positions that are this database's: those
        touching its relations, and every record of the transactions that did (their commits
        among them). Read with pg_walinspect (installed in the scratch database on first use);
        None when it cannot be had (no extension, or the WAL already recycled)."""
        if self._inspect_failed:
            return None
        if start == end:
            return 0
        try:
            with psycopg.connect(self._conninfo, autocommit=True) as conn:
                if not self._inspect_ready:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
                    self._inspect_ready = True
                # pg_walinspect reads flushed WAL only; the walwriter flushes within a second.
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline:
                    flushed = conn.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn",
                                           (end,)).fetchone()
                    if flushed is not None and flushed[0]:
                        break
                    time.sleep(0.05)
                row = conn.execute(OWN_WAL, {"start": start, "end": end}).fetchone()
        except psycopg.Error as e:
            self._inspect_failed = True
            self.notes.append(f"no WAL of this database alone: {str(e).strip()}")
            return None
        return int(row[0]) if row is not None else None

    def close(self) -> None:
        self._conn.close()


OWN_WAL = """
WITH r AS (
    SELECT xid, record_length, block_ref
    FROM pg_get_wal_records_info(%(start)s::pg_lsn, LEAST(%(end)s::pg_lsn, pg_current_wal_flush_lsn()))
), mine AS (
    SELECT '^blkref #[0-9]+: rel [0-9]+/' || oid::text || '/' AS pattern
    FROM pg_database WHERE datname = current_database()
), touched AS (
    SELECT DISTINCT r.xid FROM r, mine WHERE r.xid <> '0' AND r.block_ref ~ mine.pattern
)
SELECT coalesce(sum(r.record_length), 0) FROM r, mine
WHERE r.block_ref ~ mine.pattern OR r.xid IN (SELECT xid FROM touched)
"""


class Drain:
    """Polls a count on the scratch database until it reaches a target, keeping count of its
    own commits (one for its connection, one per poll) so that they can be taken out."""

    def __init__(self, conninfo: str, query: LiteralString, *, poll: float = 0.01) -> None:
        self.conninfo = conninfo
        self.query = query
        self.poll = poll
        self.commits = 0

    def wait(self, target: int, *, timeout: float) -> float:
        """Poll until the count is at least ``target``; returns when (``time.perf_counter``)."""
        deadline = time.perf_counter() + timeout
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            self.commits += 1
            while True:
                row = conn.execute(self.query).fetchone()
                self.commits += 1
                now = time.perf_counter()
                count = 0 if row is None else int(row[0])
                if count >= target:
                    return now
                if now > deadline:
                    raise RuntimeError(f"only {count} of {target} reached after {timeout:g} s: "
                                       f"{self.query}")
                time.sleep(self.poll)


# -- SQLite ------------------------------------------------------------------------------------


class SqliteMeter:
    """Counts the ``COMMIT`` statements of every sqlite3 connection opened since
    :func:`instrument_sqlite`, and the frames in one database's WAL file."""

    reads_open = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.commits = 0
        self._lock = threading.Lock()

    def traced(self, conn: sqlite3.Connection) -> None:
        """Set up a connection the library just opened."""
        conn.execute("PRAGMA wal_autocheckpoint=0")

        def seen(statement: str) -> None:
            if statement.lstrip()[:6].upper() == "COMMIT":
                with self._lock:
                    self.commits += 1

        conn.set_trace_callback(seen)

    def read(self) -> Reading:
        with self._lock:
            commits = self.commits
        return Reading(commits, wal_frames(self.path))

    def cost(self, before: Reading, after: Reading) -> Cost:
        return after - before

    def journal_mode(self) -> str:
        """The database's journal mode, read through a connection of its own."""
        conn = _ORIGINAL_CONNECT[0](self.path) if _ORIGINAL_CONNECT else sqlite3.connect(self.path)
        try:
            row = conn.execute("PRAGMA journal_mode").fetchone()
        finally:
            conn.close()
        return str(row[0]) if row else "?"


_ORIGINAL_CONNECT: list[Callable[..., sqlite3.Connection]] = []


def instrument_sqlite(path: Path) -> SqliteMeter:
    """Wrap ``sqlite3.connect`` in this process (a benchmark's instrument): call it before the
    library under test is imported or opens its file."""
    meter = SqliteMeter(path)
    if not _ORIGINAL_CONNECT:
        _ORIGINAL_CONNECT.append(sqlite3.connect)
    original = _ORIGINAL_CONNECT[0]

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = original(*args, **kwargs)
        meter.traced(conn)
        return conn

    # SQLAlchemy's pysqlite dialect calls sqlite3.dbapi2.connect; others call sqlite3.connect.
    sqlite3.connect = connect  # type: ignore[assignment]
    sqlite3.dbapi2.connect = connect  # type: ignore[assignment]
    return meter


def page_size(path: Path) -> int:
    """The page size written in a SQLite file's header (bytes 16-17; 1 means 65536)."""
    with path.open("rb") as f:
        head = f.read(18)
    if len(head) < 18:
        return 4096
    size = int.from_bytes(head[16:18], "big")
    return 65536 if size == 1 else size


def wal_frames(path: Path) -> int:
    """Frames in the ``-wal`` file beside ``path`` now (0 when there is none)."""
    wal = path.with_name(path.name + "-wal")
    try:
        size = wal.stat().st_size
    except FileNotFoundError:
        return 0
    if size <= WAL_HEADER:
        return 0
    return (size - WAL_HEADER) // (page_size(path) + 24)

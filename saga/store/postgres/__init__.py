"""The scale-out backend: PostgreSQL through psycopg 3, with a connection pool.

This package holds all of PostgreSQL's story: the store (:mod:`.store`), its own
SQL (:mod:`.statements`), group commit (:mod:`.group`), LISTEN/NOTIFY
(:mod:`.notify`) and the server's clock (:mod:`.clock`).

Many workers, on one or many machines, share one database; PostgreSQL is
the only thing they agree through.

Claiming. A worker leases due sagas with ``SELECT … FOR UPDATE SKIP LOCKED``
then ``UPDATE`` in one statement (:mod:`saga.store.postgres.statements`): two
workers never claim the same saga, and neither waits for the other.

Fencing. Every append is one ``UPDATE sagas … WHERE last_seq = :expected AND
(the lease is free, ours, or expired)`` followed by the ``INSERT`` of the
events. Under READ COMMITTED a second appender blocks on the row lock of the
first and, when the first commits, PostgreSQL re-evaluates its ``WHERE``
against the new row: ``last_seq`` moved, zero rows, the append is refused.
The unique ``(saga_id, seq)`` constraint is the second line of defence.

Time. Lease expiry and ``wake_at`` are compared with the ``now`` the
coordinator passes in, so that the virtual clock of the tests keeps working;
on PostgreSQL the coordinator's default clock is :class:`DatabaseClock`,
whose ``now()`` follows the server's ``clock_timestamp()``: the offset to
the server is sampled over one round trip (at its midpoint) and re-sampled
every minute, and time in between advances with the local monotonic clock.
Every worker therefore reads the same clock, the server's, and a machine
whose wall clock is minutes off neither steals live leases nor sleeps
through retries. (The error is half a round trip plus a minute of local
drift, milliseconds against leases of tens of seconds.) Recording times
(``recorded_at``) are read from the same clock as events are written, so
that each event's hash can cover its time.

Waking up. A transaction that makes a saga due with no one holding it
(``start``, an operator's cancel or retry) also runs ``pg_notify``; each
process keeps one dedicated ``LISTEN`` connection (:mod:`saga.store.postgres.notify`),
so idle workers wake within milliseconds of the commit. Workers still poll,
which covers lost notifications and sagas whose lease or backoff runs out.

Faults. Dropped connections, a restarted server, ``pg_terminate_backend``,
serialization failures and deadlocks are retried, the whole transaction
again (:mod:`saga.store.transient`); a stale pooled connection fails on first
use, which is such a fault: the pool drops it and the retry reconnects.

Group commit. Appends from concurrent drives in one process share a
transaction (:mod:`saga.store.postgres.group`): one statement checks every saga's
``seq`` and lease and inserts the events of those that pass.
"""

from saga.store.postgres.notify import CHANNEL, PostgresListener
from saga.store.postgres.server_clock import DatabaseClock
from saga.store.postgres.store import PostgresEventStore

__all__ = ["CHANNEL", "DatabaseClock", "PostgresEventStore", "PostgresListener"]

"""Transient faults on the real server: terminated backends, and a COMMIT whose answer is lost.

The lost answer is produced by a TCP relay between the store and PostgreSQL
that forwards the client's ``COMMIT`` to the server, lets the server commit,
and then cuts the connection without passing the server's reply back: the
client cannot know whether its transaction committed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from saga import EventStore, SagaStatus
from saga import events as ev
from saga.store.transient import is_transient

pytestmark = pytest.mark.postgres


class CommitCutter:
    """A TCP relay to PostgreSQL that, when armed, swallows the reply to the next commit: a
    ``COMMIT``, or a statement that writes events in autocommit (its own transaction)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cuts = 0
        self.commits_seen = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            cut = threading.Event()
            threading.Thread(target=self._upstream, args=(client, server, cut), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client, cut), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket, cut: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                is_commit = ((data[:1] == b"Q" and data[5:].rstrip(b"\0").strip() == b"COMMIT")
                             or b"INSERT INTO saga_events" in data)
                if is_commit:
                    self.commits_seen += 1
                if is_commit and self.armed.is_set():
                    self.armed.clear()
                    cut.set()  # from now on, nothing the server says reaches the client
                    server.sendall(data)
                    time.sleep(0.3)  # the server commits
                    self.cuts += 1
                    break
                server.sendall(data)
        except OSError:
            pass
        for s in (client, server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    @staticmethod
    def _downstream(server: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        try:
            while data := server.recv(65536):
                if cut.is_set():
                    continue
                client.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self._closed = True
        self.listener.close()


@pytest.fixture
def cutter(postgres_url: str) -> Iterator[tuple[CommitCutter, str]]:
    u = sa.make_url(postgres_url)
    relay = CommitCutter(u.host or "127.0.0.1", u.port or 5432)
    via = u.set(host="127.0.0.1", port=relay.port, query={**u.query, "sslmode": "disable"})
    yield relay, via.render_as_string(hide_password=False)
    relay.close()


def first_events(now: datetime) -> list[ev.Event]:
    return [ev.SagaStarted(name="raw", version=1, input={"n": 1}, at=now)]


def test_append_whose_commit_answer_is_lost_is_not_duplicated(
    cutter: tuple[CommitCutter, str], postgres_url: str
) -> None:
    relay, via = cutter
    now = datetime.now(UTC)
    with EventStore(via) as store:
        assert store.create("s1", first_events(now), name="raw", version=1,
                            status=SagaStatus.RUNNING, wake_at=now, now=now)
        batch: list[ev.Event] = [
            ev.StepAttemptStarted(step="one", attempt=1, at=now),
            ev.StepSucceeded(step="one", attempt=1, result={"ok": True}, at=now),
        ]
        relay.armed.set()
        store.append("s1", 1, batch, status=SagaStatus.RUNNING, wake_at=now, now=now,
                     owner="w1", lease_until=now + timedelta(seconds=30))
        assert relay.cuts == 1, "the relay should have cut the connection during COMMIT"
    with EventStore(postgres_url) as direct:
        log = direct.load("s1")
        assert [(e.seq, e.type, e.writer) for e in log] == [
            (1, "SagaStarted", None), (2, "StepAttemptStarted", "w1"), (3, "StepSucceeded", "w1"),
        ]
        assert direct.summary("s1").last_seq == 3


def test_create_whose_commit_answer_is_lost_reports_success(
    cutter: tuple[CommitCutter, str], postgres_url: str
) -> None:
    relay, via = cutter
    now = datetime.now(UTC)
    with EventStore(via) as store:
        relay.armed.set()
        created = store.create("s1", first_events(now), name="raw", version=1,
                               status=SagaStatus.RUNNING, wake_at=now, now=now, owner="w1",
                               lease_until=now + timedelta(seconds=30))
        assert relay.cuts == 1
        assert created is True
        # A genuinely second start of the same id (other data) is still refused.
        later = now + timedelta(seconds=1)
        assert not store.create("s1", first_events(later), name="raw", version=1,
                                status=SagaStatus.RUNNING, wake_at=later, now=later)
    with EventStore(postgres_url) as direct:
        assert [e.type for e in direct.load("s1")] == ["SagaStarted"]


def test_lost_commit_that_did_not_commit_is_retried(cutter: tuple[CommitCutter, str],
                                                    postgres_url: str) -> None:
    """The other side of the doubt: the server rolled back, so the retry must write."""
    relay, via = cutter
    now = datetime.now(UTC)
    with EventStore(postgres_url) as direct:
        assert direct.create("s1", first_events(now), name="raw", version=1,
                             status=SagaStatus.RUNNING, wake_at=now, now=now)
    with psycopg.connect(
        sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False),
        autocommit=True,
    ) as admin, EventStore(via) as store:
        # A deferred constraint trigger fails the first COMMIT on the server side (a
        # sequence, which rollback does not undo, counts the calls): the client sees the
        # connection cut during COMMIT, and nothing committed.
        admin.execute("CREATE SEQUENCE fail_once_calls")
        admin.execute("""
            CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('fail_once_calls') = 1 THEN
                    RAISE EXCEPTION 'refused at commit';
                END IF;
                RETURN NULL;
            END $$""")
        admin.execute("""
            CREATE CONSTRAINT TRIGGER fail_once AFTER INSERT ON saga_events
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_once()""")
        relay.armed.set()
        store.append("s1", 1, [ev.StepAttemptStarted(step="one", attempt=1, at=now)],
                     status=SagaStatus.RUNNING, wake_at=now, now=now)
        assert relay.cuts == 1
        calls = admin.execute("SELECT last_value FROM fail_once_calls").fetchone()
        assert calls == (2,), "the first COMMIT failed on the server, the retry committed"
        assert [e.type for e in store.load("s1")] == ["SagaStarted", "StepAttemptStarted"]


def _terminate_all(postgres_url: str) -> int:
    conninfo = sa.make_url(postgres_url).set(
        drivername="postgresql", database="postgres"
    ).render_as_string(hide_password=False)
    database = sa.make_url(postgres_url).database
    with psycopg.connect(conninfo, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
        ).fetchall()
    return len(rows)


def test_store_survives_every_backend_being_terminated(postgres_url: str) -> None:
    now = datetime.now(UTC)
    with EventStore(postgres_url) as store:
        assert store.create("s1", first_events(now), name="raw", version=1,
                            status=SagaStatus.RUNNING, wake_at=now, now=now)
        # Warm several pooled connections, then kill every one of them.
        barrier = threading.Barrier(4)

        def read() -> None:
            barrier.wait()
            store.load("s1")

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert _terminate_all(postgres_url) >= 1
        store.append("s1", 1, [ev.StepAttemptStarted(step="one", attempt=1, at=now)],
                     status=SagaStatus.RUNNING, wake_at=now, now=now)
        assert _terminate_all(postgres_url) >= 1
        assert [e.seq for e in store.load("s1")] == [1, 2]
        assert store.claim("w", now, until=now + timedelta(seconds=5)) == ["s1"]


def test_real_driver_errors_are_classified(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url, isolation_level="REPEATABLE READ")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (id int PRIMARY KEY, n int)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1, 0)")
        with engine.connect() as first, engine.connect() as second:
            first.exec_driver_sql("SELECT n FROM t WHERE id = 1").scalar()
            second.exec_driver_sql("UPDATE t SET n = 1 WHERE id = 1")
            second.commit()
            with pytest.raises(sa.exc.OperationalError) as serialization:
                first.exec_driver_sql("UPDATE t SET n = 2 WHERE id = 1")
            first.rollback()
        assert getattr(serialization.value.orig, "sqlstate", None) == "40001"
        assert is_transient(serialization.value)
        with engine.connect() as conn:
            with pytest.raises(sa.exc.IntegrityError) as duplicate:
                conn.exec_driver_sql("INSERT INTO t VALUES (1, 0)")
            conn.rollback()
            with pytest.raises(sa.exc.ProgrammingError) as syntax:
                conn.exec_driver_sql("SELEC 1")
        assert not is_transient(duplicate.value)
        assert not is_transient(syntax.value)
        refused = sa.create_engine(sa.make_url(postgres_url).set(port=1))
        with pytest.raises(sa.exc.OperationalError) as unreachable:
            refused.connect()
        assert is_transient(unreachable.value)
    finally:
        engine.dispose()

"""The PostgreSQL store on the real server: append-only trigger, fencing, claiming, the clock."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from saga import ConcurrencyError, Coordinator, EventStore, Saga, SagaStatus, StepContext, VirtualClock
from saga import events as ev
from saga._engine.reading import view as read_view
from saga.store.postgres import DatabaseClock, PostgresEventStore

pytestmark = pytest.mark.postgres


def libpq(url: str) -> str:
    """The SQLAlchemy URL as a libpq URI, for raw psycopg connections."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def started(at: datetime) -> ev.SagaStarted:
    return ev.SagaStarted(name="raw", version=1, input={"n": 1}, at=at)


def attempt(n: int, at: datetime) -> ev.StepAttemptStarted:
    return ev.StepAttemptStarted(step="one", attempt=n, at=at)


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PostgresEventStore]:
    s = EventStore(postgres_url)
    assert isinstance(s, PostgresEventStore)
    yield s
    s.close()


def new_saga(store: EventStore, saga_id: str, now: datetime, *, wake: bool = True) -> None:
    assert store.create(saga_id, [started(now)], name="raw", version=1, status=SagaStatus.RUNNING,
                        wake_at=now if wake else None, now=now)


# -- the log is append-only ---------------------------------------------------------------------


def test_trigger_refuses_update_and_delete_of_events(pg: PostgresEventStore, postgres_url: str) -> None:
    now = datetime.now(UTC)
    new_saga(pg, "s1", now)
    with psycopg.connect(libpq(postgres_url), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: UPDATE"):
            conn.execute("UPDATE saga_events SET type = 'SagaCompleted' WHERE saga_id = 's1'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: DELETE"):
            conn.execute("DELETE FROM saga_events WHERE saga_id = 's1'")
        count = conn.execute("SELECT count(*) FROM saga_events WHERE saga_id = 's1'").fetchone()
    assert count == (1,)
    assert [e.type for e in pg.load("s1")] == ["SagaStarted"]


# -- fencing under READ COMMITTED ---------------------------------------------------------------


def test_store_runs_in_read_committed(pg: PostgresEventStore) -> None:
    engine: sa.Engine = pg.engine
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "read committed"


def _append_as(url: str, owner: str, results: dict[str, str], at: datetime) -> None:
    store = EventStore(url)
    try:
        store.append("s1", 1, [attempt(1, at)], status=SagaStatus.RUNNING, wake_at=at, now=at,
                     owner=owner, lease_until=at + timedelta(seconds=30))
        results[owner] = "won"
    except ConcurrencyError as e:
        results[owner] = type(e).__name__
    finally:
        store.close()


def _waiting_on_locks(url: str, n: int) -> bool:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None and row[0] >= n:
                return True
            time.sleep(0.01)
    return False


def test_two_appenders_blocked_on_the_same_row_cannot_both_win(pg: PostgresEventStore, postgres_url: str
                                                               ) -> None:
    now = datetime.now(UTC)
    new_saga(pg, "s1", now)
    results: dict[str, str] = {}
    with psycopg.connect(libpq(postgres_url)) as holder:
        # Hold the saga's row so both appenders are inside their UPDATE, waiting, when it
        # is released: PostgreSQL must then re-check the second one's WHERE clause.
        holder.execute("SELECT * FROM sagas WHERE saga_id = 's1' FOR UPDATE")
        threads = [
            threading.Thread(target=_append_as, args=(postgres_url, f"w{i}", results, now))
            for i in (1, 2)
        ]
        for t in threads:
            t.start()
        assert _waiting_on_locks(postgres_url, 2), "both appenders should be waiting on the row"
        holder.rollback()
        for t in threads:
            t.join(10)
    assert sorted(results.values()) == ["ConcurrencyError", "won"]
    winner = next(o for o, r in results.items() if r == "won")
    log = pg.load("s1")
    assert [(e.seq, e.type) for e in log] == [(1, "SagaStarted"), (2, "StepAttemptStarted")]
    assert log[1].writer == winner
    assert pg.summary("s1").lease_owner == winner


def _race(store: EventStore, seq: int, name: str, barrier: threading.Barrier, outcome: list[str],
          *, at: datetime) -> None:
    e = ev.StepAttemptFailed(step="one", attempt=seq, error_type="X", message=name, retried=True,
                             at=at)
    barrier.wait()
    try:
        store.append("s1", seq, [e], status=SagaStatus.RUNNING, wake_at=at, now=at)
        outcome.append(name)
    except ConcurrencyError:
        outcome.append("refused")


def test_racing_appenders_one_winner_per_round(pg: PostgresEventStore, postgres_url: str) -> None:
    now = datetime.now(UTC)
    new_saga(pg, "s1", now)
    stores = [EventStore(postgres_url) for _ in range(2)]
    winners: list[str] = []
    try:
        for seq in range(1, 21):
            barrier = threading.Barrier(2)
            outcome: list[str] = []
            threads = [
                threading.Thread(target=_race, args=(s, seq, f"w{i}", barrier, outcome),
                                 kwargs={"at": now})
                for i, s in enumerate(stores)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            assert outcome.count("refused") == 1, outcome
            winners.extend(o for o in outcome if o != "refused")
    finally:
        for s in stores:
            s.close()
    log = pg.load("s1")
    assert [e.seq for e in log] == list(range(1, 22))
    assert [e.data["message"] for e in log[1:]] == winners


# -- claiming -------------------------------------------------------------------------------------


def test_concurrent_claims_never_share_a_saga(pg: PostgresEventStore, postgres_url: str) -> None:
    now = datetime.now(UTC)
    for i in range(120):
        new_saga(pg, f"s{i:03}", now)
    claimed: dict[str, list[str]] = {"a": [], "b": []}
    stores = {k: EventStore(postgres_url) for k in claimed}
    barrier = threading.Barrier(2)

    def claimer(owner: str) -> None:
        barrier.wait()
        while True:
            got = stores[owner].claim(owner, now, until=now + timedelta(seconds=30), limit=7)
            if not got:
                return
            claimed[owner].extend(got)

    threads = [threading.Thread(target=claimer, args=(k,)) for k in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in stores.values():
        s.close()
    a, b = set(claimed["a"]), set(claimed["b"])
    assert not a & b
    assert a | b == {f"s{i:03}" for i in range(120)}
    assert len(claimed["a"]) + len(claimed["b"]) == 120
    assert {pg.summary(s).lease_owner for s in a} <= {"a"}


def test_claim_skips_a_locked_saga_instead_of_waiting(pg: PostgresEventStore, postgres_url: str) -> None:
    now = datetime.now(UTC)
    for i in range(3):
        new_saga(pg, f"s{i}", now - timedelta(seconds=3 - i))
    with psycopg.connect(libpq(postgres_url)) as holder:
        holder.execute("SELECT * FROM sagas WHERE saga_id = 's0' FOR UPDATE")
        t0 = time.monotonic()
        got = pg.claim("me", now, until=now + timedelta(seconds=30), limit=10)
        took = time.monotonic() - t0
        holder.rollback()
    assert sorted(got) == ["s1", "s2"]
    assert took < 1.0
    assert pg.claim("me", now, until=now + timedelta(seconds=30)) == ["s0"]


def test_claim_takes_expired_leases_only(pg: PostgresEventStore) -> None:
    now = datetime.now(UTC)
    new_saga(pg, "live", now)
    new_saga(pg, "expired", now)
    new_saga(pg, "resting", now, wake=False)
    assert sorted(pg.claim("old", now, until=now + timedelta(seconds=5))) == ["expired", "live"]
    pg.renew("old", ["live"], until=now + timedelta(seconds=60))
    later = now + timedelta(seconds=10)
    assert pg.claim("new", later, until=later + timedelta(seconds=5)) == ["expired"]
    assert pg.summary("expired").lease_owner == "new"
    assert pg.summary("live").lease_owner == "old"


# -- the database's clock -------------------------------------------------------------------------


def test_database_clock_follows_the_server(pg: PostgresEventStore) -> None:
    engine: sa.Engine = pg.engine
    clock = DatabaseClock(engine)
    readings = []
    with engine.connect() as conn:
        for _ in range(5):
            ours = clock.now()
            server = conn.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
            readings.append(abs((server - ours).total_seconds()))
            time.sleep(0.01)
    assert max(readings) < 0.05, readings
    a, b = clock.now(), clock.now()
    assert b >= a


def test_coordinator_uses_the_database_clock_on_postgres(pg: PostgresEventStore, sqlite_url: str) -> None:
    assert isinstance(pg, PostgresEventStore)
    assert isinstance(Coordinator(pg).clock, DatabaseClock)
    with EventStore(sqlite_url) as lite:
        assert not isinstance(Coordinator(lite).clock, DatabaseClock)
    virtual = VirtualClock()
    assert Coordinator(pg, clock=virtual).clock is virtual


# -- the application's role -----------------------------------------------------------------------


def _documented_grants(role: str) -> list[str]:
    """The SQL of docs/storage.md's "Locking down the application's role", for ``role``."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "storage.md").read_text()
    section = text.split("## Locking down the application's role", 1)[1]
    block = section.split("```sql", 1)[1].split("```", 1)[0]
    statements = []
    for raw in block.split(";"):
        stmt = " ".join(line.split("--")[0] for line in raw.splitlines()).strip()
        if stmt:
            statements.append(stmt.replace("PASSWORD '…'", "").replace("saga_app", role))
    return statements


def test_the_documented_application_role_can_run_sagas_but_not_rewrite_history(
    postgres_url: str,
) -> None:
    role = f"saga_app_{uuid.uuid4().hex[:8]}"
    statements = _documented_grants(role)
    assert any(s.startswith("REVOKE TRUNCATE") for s in statements)
    with psycopg.connect(libpq(postgres_url), autocommit=True) as owner:
        for stmt in statements:
            owner.execute(stmt)
        try:
            app_url = sa.make_url(postgres_url).set(username=role).render_as_string(
                hide_password=False
            )
            quick = Saga("quick")

            @quick.step()
            def one(ctx: StepContext) -> int:
                return 1

            with EventStore(app_url) as store:
                coordinator = Coordinator(store, [quick])
                assert coordinator.execute("quick", None, saga_id="q").status is SagaStatus.COMPLETED
                coordinator.start("quick", None, saga_id="q2")
                assert coordinator.work(until_idle=True) == 1
            with psycopg.connect(libpq(app_url), autocommit=True) as app:
                for sql in ("TRUNCATE saga_events", "TRUNCATE sagas",
                            "DELETE FROM saga_events", "UPDATE saga_events SET seq = seq"):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        app.execute(sql)
            with EventStore(postgres_url) as direct:
                assert read_view(direct, "q2").status is SagaStatus.COMPLETED
        finally:
            owner.execute(f'DROP OWNED BY "{role}"')
            owner.execute(f'DROP ROLE "{role}"')

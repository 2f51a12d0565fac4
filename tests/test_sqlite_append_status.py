"""SQLite appends that keep a saga's status do not set it: the status stays right when another
store on the same file changed it in between (at the same ``seq``, by an append of no events)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from saga import EventStore, SagaStatus
from saga import events as ev

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def test_an_append_sets_the_status_another_store_changed_meanwhile(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    mine, theirs = EventStore(url), EventStore(url)
    try:
        mine.create("s", [ev.SagaStarted(name="order", version=1, input=None, at=T0)],
                    name="order", version=1, status=SagaStatus.RUNNING, wake_at=T0, now=T0)
        # the other store moves the status on without moving the log on
        theirs.append("s", 1, [], status=SagaStatus.COMPENSATING, wake_at=T0, now=T0)
        assert theirs.summary("s").status is SagaStatus.COMPENSATING
        # this store last wrote RUNNING at seq 1: its append must still set RUNNING
        mine.append("s", 1, [ev.StepAttemptStarted(step="x", attempt=1, at=T0)],
                    status=SagaStatus.RUNNING, wake_at=T0 + timedelta(seconds=1), now=T0)
        summary = theirs.summary("s")
        assert (summary.status, summary.last_seq) == (SagaStatus.RUNNING, 2)
        # and one that keeps the status it last wrote keeps the log and the index right
        mine.append("s", 2, [ev.StepSucceeded(step="x", attempt=1, result=None, at=T0)],
                    status=SagaStatus.RUNNING, wake_at=None, now=T0)
        summary = theirs.summary("s")
        assert (summary.status, summary.last_seq, summary.wake_at) == (SagaStatus.RUNNING, 3, None)
        assert [e.seq for e in theirs.load("s")] == [1, 2, 3]
    finally:
        mine.close()
        theirs.close()


def test_an_append_sets_the_wake_up_time_another_store_moved_meanwhile(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    mine, theirs = EventStore(url), EventStore(url)
    later = T0 + timedelta(hours=1)
    try:
        mine.create("s", [ev.SagaStarted(name="order", version=1, input=None, at=T0)],
                    name="order", version=1, status=SagaStatus.RUNNING, wake_at=T0, now=T0)
        # the other store puts the wake-up off without moving the log on
        theirs.append("s", 1, [], status=SagaStatus.RUNNING, wake_at=later, now=T0)
        # this store last wrote a wake-up already due at seq 1, and appends one due now:
        # it must not keep the one it remembers, but set its own
        now = T0 + timedelta(seconds=5)
        mine.append("s", 1, [ev.StepAttemptStarted(step="x", attempt=1, at=now)],
                    status=SagaStatus.RUNNING, wake_at=now, now=now)
        assert theirs.summary("s").wake_at == now
    finally:
        mine.close()
        theirs.close()

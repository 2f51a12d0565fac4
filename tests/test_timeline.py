"""The timeline: every attempt accounted for once, long runs summarised, every line safe
for a terminal, and the same text whether the log is read whole or in pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saga import EventStore, SagaStatus
from saga import events as ev
from saga.inspection.timeline import render, show, stream
from saga.text import escape, shorten
from tests.test_attempt_projection import Plan, expected, history, plans

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DASH = "\N{EN DASH}"


def failures(messages: list[str], *, step: str = "pay", compensation: bool = False) -> list[ev.Event]:
    """A started saga whose step failed once per message, each retried a second later."""
    start_type = ev.CompensationAttemptStarted if compensation else ev.StepAttemptStarted
    fail_type = ev.CompensationAttemptFailed if compensation else ev.StepAttemptFailed
    out: list[ev.Event] = [ev.SagaStarted(name="s", version=1, at=T0)]
    for n, message in enumerate(messages, start=1):
        at = T0 + timedelta(seconds=n)
        out.append(start_type(step=step, attempt=n, at=at))
        out.append(fail_type(step=step, attempt=n, at=at, error_type="E", message=message, retried=True,
                             next_attempt_at=at + timedelta(seconds=1)))
    return out


def attempts_mentioned(text: str) -> list[int]:
    """Every attempt number a timeline's failure lines and summaries account for."""
    found: list[int] = []
    for line in text.splitlines():
        if m := re.search(rf"attempts ([\d,]+){DASH}([\d,]+) failed the same way", line):
            first, last = (int(g.replace(",", "")) for g in m.groups())
            found += range(first, last + 1)
        elif m := re.search(r"attempt (\d+) failed", line):
            found.append(int(m.group(1)))
    return found


@pytest.mark.parametrize("n", range(1, 9))
def test_a_run_of_identical_failures_keeps_two_at_each_end(n: int) -> None:
    text = render("r", failures(["boom"] * n))
    assert attempts_mentioned(text) == list(range(1, n + 1))
    summary = [line for line in text.splitlines() if "the same way" in line]
    if n <= 5:
        assert not summary
        assert text.count(" started") == n + 2  # the header, the saga and each attempt
    else:
        assert summary == [f"  +   3.000s  pay   attempts 3{DASH}{n - 2} failed the same way (E: boom)"]


def test_a_different_error_ends_a_run() -> None:
    text = render("r", failures(["a"] * 7 + ["b"] * 7, step="reserve", compensation=True))
    assert f"compensation attempts 3{DASH}5 failed the same way (E: a)" in text
    assert f"compensation attempts 10{DASH}12 failed the same way (E: b)" in text
    assert "compensation attempt 7 failed: E: a" in text and "compensation attempt 8 failed: E: b" in text


def test_an_attempt_still_running_is_shown_after_the_run() -> None:
    events = failures(["a"] * 9)
    events.append(ev.StepAttemptStarted(step="pay", attempt=10, at=T0 + timedelta(seconds=10)))
    lines = render("r", events).splitlines()
    assert lines[-1].endswith("pay   attempt 10 started")
    assert lines[-2].endswith("attempt 9 failed: E: a; next attempt in 1.000s")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b"]), max_size=40))
def test_every_attempt_is_accounted_for_once(messages: list[str]) -> None:
    assert attempts_mentioned(render("r", failures(messages))) == list(range(1, len(messages) + 1))


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text())
def test_every_line_is_safe_for_a_terminal(message: str, reason: str) -> None:
    events = [*failures([message] * 3), ev.SagaCancelRequested(reason=reason, at=T0)]
    text = render("r", events)
    assert all(c.isprintable() for line in text.split("\n") for c in line)
    assert escape(message) in text and escape(reason) in text


def test_escape_and_shorten() -> None:
    assert escape("naïve café ✓") == "naïve café ✓"
    assert escape("\x1b[2K\r\n\t\x07\x08\x7f\x9b\u202e\u2028\ud800") == (
        "\\x1b[2K\\r\\n\\t\\x07\\x08\\x7f\\x9b\\u202e\\u2028\\ud800"
    )
    assert shorten("x" * 60) == "x" * 60
    assert shorten("x" * 10_000) == "x" * 60 + "…(10,000 characters)"


def test_paging_reads_the_same_log(store_url: str) -> None:
    events = failures([f"e{n % 3}" for n in range(1_200)])
    with EventStore(store_url) as store:
        store.create("p", events[:1], name="s", version=1, status=SagaStatus.RUNNING, wake_at=None, now=T0)
        for i in range(1, len(events), 500):
            store.append("p", i, events[i:i + 500], status=SagaStatus.RUNNING, wake_at=None, now=T0)
        whole = store.load("p")
        assert len(whole) == 2_401
        for page in (1, 7, 1000, 5000):
            assert [s.seq for s in stream(store, "p", page=page)] == [s.seq for s in whole]
        assert [s.seq for s in stream(store, "p", through=1_000, page=7)] == list(range(1, 1_001))
        assert list(show(store, "p")) == render("p", [s.event for s in whole]).splitlines()


def test_compensation_and_failure_of_the_saga_are_about_the_saga() -> None:
    events = [*failures(["x"]),
              ev.CompensationStarted(reason="step pay failed", step="pay", at=T0),
              ev.SagaFailed(step="pay", reason="gave up", at=T0)]
    lines = render("r", events).splitlines()
    assert lines[-2] == "  +   0.000s  saga  compensating: step pay failed"
    assert lines[-1] == "  +   0.000s  saga  failed: compensation of pay gave up; needs an operator"


_HOW = {"failed": "failed", "timed out": "timed_out", "ended in doubt": "lost"}
_HOWS = "|".join(_HOW)
_LINE = re.compile(r"^  \+ *[\d.]+s  (\S+) +(.*)$")


def outcomes_drawn(text: str) -> dict[tuple[bool, str, int], str]:
    """Each attempt a timeline's lines account for, keyed ``(compensation, step, number)``, with
    the outcome its line (or the summary of its run) says; ``running`` when only its start is drawn."""
    drawn: dict[tuple[bool, str, int], str] = {}

    def end(key: tuple[bool, str, int], outcome: str) -> None:
        assert drawn.get(key, "running") == "running", f"{key} drawn twice"
        drawn[key] = outcome

    for line in text.splitlines()[1:]:
        m = _LINE.match(line)
        if m is None:
            continue  # the header, or a call an attempt made
        step, said = m.groups()
        if m := re.fullmatch(r"(compensation )?attempt (\d+) started", said):
            drawn.setdefault((bool(m[1]), step, int(m[2])), "running")
        elif m := re.match(r"succeeded on attempt (\d+): ", said):
            end((False, step, int(m[1])), "succeeded")
        elif m := re.fullmatch(r"compensated on attempt (\d+)", said):
            end((True, step, int(m[1])), "succeeded")
        elif m := re.match(rf"(compensation )?attempt (\d+) ({_HOWS}): ", said):
            end((bool(m[1]), step, int(m[2])), _HOW[m[3]])
        elif m := re.match(rf"(compensation )?attempts ([\d,]+){DASH}([\d,]+) ({_HOWS}) the same way", said):
            first, last = (int(g.replace(",", "")) for g in (m[2], m[3]))
            for n in range(first, last + 1):
                end((bool(m[1]), step, n), _HOW[m[4]])
    return drawn


@settings(max_examples=100, deadline=None)
@given(items=st.lists(plans, min_size=1, max_size=12), last_running=st.booleans(),
       cuts=st.lists(st.booleans(), max_size=4))
def test_the_text_draws_every_attempt_of_the_data_timeline_once(
    items: list[Plan], last_running: bool, cuts: list[bool]
) -> None:
    events = [e for batch in history("s", items, last_running, cuts) for e in batch]
    drawn = outcomes_drawn(render("r", events))
    assert drawn == {(a.compensation, a.step, a.attempt): a.outcome for a in expected(events)}

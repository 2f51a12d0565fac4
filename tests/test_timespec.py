"""--since/--until values: ISO 8601 or relative to now; one precise error otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saga import InvalidInput, SagaError
from saga.timespec import parse_time, parse_window

NOW = datetime(2026, 5, 10, 12, 30, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", NOW - timedelta(seconds=30)),
    ("15m", NOW - timedelta(minutes=15)),
    ("2h", NOW - timedelta(hours=2)),
    ("7d", NOW - timedelta(days=7)),
    ("2w", NOW - timedelta(weeks=2)),
    ("0s", NOW),
    (" 2h ", NOW - timedelta(hours=2)),
    ("2026-05-01", datetime(2026, 5, 1, tzinfo=UTC)),
    ("2026-05-01T08:15:00", datetime(2026, 5, 1, 8, 15, tzinfo=UTC)),
    ("2026-05-01T08:15:00Z", datetime(2026, 5, 1, 8, 15, tzinfo=UTC)),
    ("2026-05-01T10:15:00+02:00", datetime(2026, 5, 1, 8, 15, tzinfo=UTC)),
    ("2026-05-01 08:15:00.250", datetime(2026, 5, 1, 8, 15, 0, 250000, tzinfo=UTC)),
])
def test_valid_times(text: str, expected: datetime) -> None:
    got = parse_time(text, now=NOW)
    assert got == expected and got.tzinfo is UTC


def test_relative_times_count_back_from_the_given_now_in_any_zone() -> None:
    tokyo = NOW.astimezone(timezone(timedelta(hours=9)))
    assert parse_time("1h", now=tokyo) == NOW - timedelta(hours=1)
    assert parse_time("1h", now=tokyo).tzinfo is UTC


@pytest.mark.parametrize("text", ["", "  ", "2", "h", "2x", "-2h", "2 h", "2.5h", "1h30m", "yesterday",
                                  "2026-13-01", "2026-05-01T25:00", "99999999999d", "9999999w"])
def test_bad_times_are_refused_with_one_message_naming_the_option(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_time(text, now=NOW, option="--since")
    message = str(caught.value)
    assert message.startswith("--since: ")
    assert "\n" not in message
    assert isinstance(caught.value, SagaError)


def test_the_error_says_what_is_expected() -> None:
    expected = r"ISO 8601 .* or a duration ago \(30s, 15m, 2h, 7d, 2w\), got 'soon'"
    with pytest.raises(InvalidInput, match=expected):
        parse_time("soon", now=NOW, option="--until")


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_time("2h", now=datetime(2026, 1, 1))


def test_a_window_whose_start_is_after_its_end_is_refused() -> None:
    assert parse_window("7d", "1d", now=NOW) == (NOW - timedelta(days=7), NOW - timedelta(days=1))
    assert parse_window(None, None, now=NOW) == (None, None)
    assert parse_window("2026-05-01", None, now=NOW) == (datetime(2026, 5, 1, tzinfo=UTC), None)
    with pytest.raises(InvalidInput, match=r"--since .* is after --until"):
        parse_window("1d", "7d", now=NOW)
    with pytest.raises(InvalidInput, match=r"^--until: "):
        parse_window("1d", "later", now=NOW)


@given(st.integers(0, 10_000), st.sampled_from("smhdw"))
def test_relative_times_are_exact(amount: int, unit: str) -> None:
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert NOW - parse_time(f"{amount}{unit}", now=NOW) == timedelta(seconds=amount * seconds)


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)), st.booleans())
def test_iso_times_round_trip(moment: datetime, zoned: bool) -> None:
    text = moment.replace(tzinfo=UTC).isoformat() if zoned else moment.isoformat()
    assert parse_time(text, now=NOW) == moment.replace(tzinfo=UTC)

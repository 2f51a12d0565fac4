"""Every query parameter of every route of ``saga ui``, checked in one place: a value it cannot take is
a 400 page (or JSON error) of one line, never a 500, on each database."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator

import pytest

from tests.ui_log import HTTP, free_port, serving, write_log

WHOLE = ["²", "٣", "9" * 5000, "-1", "1.5", "0x10", "1e3", "\x00", "x" * 5000]
TEXT = ["\x00", "x" * 5000, "a\nb"]
TIMES = ["²", "9" * 5000, "\x00", "x" * 5000, "2030-13-01"]
NUL_CURSOR = base64.urlsafe_b64encode(b'[1.0,"\\u0000"]').decode().rstrip("=")
"""A cursor no page gave: it names a saga id holding NUL, which PostgreSQL cannot compare."""

ROUTES: dict[str, dict[str, list[str]]] = {
    path: {"status": ["bogus", "\x00", "x" * 5000], "name": TEXT, "failed_step": TEXT,
           "error_type": TEXT, "since": TIMES, "until": TIMES, "limit": [*WHOLE, "0", "201"],
           "cursor": ["²", "9" * 5000, "\x00", "x" * 5000, NUL_CURSOR]}
    for path in ("/", "/rows", "/api/sagas")
} | {
    path: {"page": [*WHOLE, "0", "2"]} for path in ("/sagas/trip-ok", "/api/sagas/trip-ok")
} | {
    "/sagas/trip-ok#": {"seq": [*WHOLE, "0", "99999"]},
} | {
    path: {"saga": ["\x00", "x" * 5000], "seq": [*WHOLE, "0", "1", "99999"]}
    for path in ("/attempt", "/api/attempt")
} | {
    path: {"name": TEXT, "since": TIMES} for path in ("/stats", "/api/stats")
}
"""Per route, each parameter it takes and values it must refuse (``seq=1`` starts no attempt)."""

_FINE = {"saga": "trip-ok", "seq": "2"}  # what /attempt needs besides the parameter under test


@pytest.fixture
def base(sql_url: str) -> Iterator[str]:
    write_log(sql_url)
    with serving(sql_url, free_port()) as url:
        yield url


def _refused(base: str, path: str, params: list[tuple[str, str]] | dict[str, str]) -> str:
    """The one line of the 400 answer to ``path?params``."""
    items = list(params.items()) if isinstance(params, dict) else params
    r = HTTP.get(base + path.rstrip("#"), params=[(k, v) for k, v in items], timeout=30)
    assert r.status_code == 400, (path, params, r.status_code, r.text[:2000])
    if "/api/" in path:
        message = r.json()["error"]
    else:
        [found] = re.findall(r'<p class="error-message">(.*?)</p>', r.text, re.S)
        message = html.unescape(found)
    assert message and "\n" not in message and len(message) < 400, message
    assert "Traceback" not in r.text
    return str(message)


def test_every_value_a_parameter_cannot_take_is_one_line_of_400(base: str) -> None:
    for path, params in ROUTES.items():
        for name, values in params.items():
            for value in values:
                query = {**(_FINE if "attempt" in path else {}), name: value}
                message = _refused(base, path, query)
                assert name in message, (path, name, message)


def test_unknown_and_repeated_parameters_are_refused(base: str) -> None:
    for path, takes in ROUTES.items():
        assert "unknown" in _refused(base, path, {"bogus": "1"})
        taken = next(iter(takes))
        value = "trip-ok" if taken == "saga" else "1" if taken in ("page", "seq", "limit") else "x"
        assert "more than once" in _refused(base, path, [(taken, value), (taken, value)])
    # the attempt's old address is refused with a message that says what the page takes
    assert "seq" in _refused(base, "/api/attempt", {"saga": "trip-ok", "n": "1"})


@pytest.mark.parametrize("saga_id", ["%00", "x" * 300, "%C2%9B"])
def test_a_saga_id_no_saga_can_have_is_refused(base: str, saga_id: str) -> None:
    for prefix in ("/sagas/", "/api/sagas/"):
        r = HTTP.get(f"{base}{prefix}{saga_id}", timeout=30)
        assert r.status_code == 400, (prefix, saga_id, r.text[:500])


def test_good_values_still_work(base: str) -> None:
    for path, query in [("/api/sagas", {"limit": "2", "status": "compensated", "since": "2030-01-01"}),
                        ("/", {"limit": "1", "name": "", "status": ""}),
                        ("/api/sagas/trip-ok", {"page": "1"}), ("/sagas/trip-ok", {"seq": "2"}),
                        ("/api/attempt", {"saga": "trip-ok", "seq": "2"}),
                        ("/api/stats", {"name": "trip", "since": "2h"})]:
        r = HTTP.get(base + path, params=query, timeout=30)
        assert r.status_code == 200, (path, query, r.text[:500])

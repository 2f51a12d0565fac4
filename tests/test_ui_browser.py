"""``saga ui`` in a real browser: Debian's Chromium driven by Playwright over a log made by real sagas.

The screenshot of the timeline page is kept as ``docs/timeline.png`` (README shows it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from saga import Coordinator, EventStore, VirtualClock
from tests.ui_log import EVIL_ID, EVIL_MESSAGE, HTTP, Log, free_port, serving, trip, write_log

pytestmark = pytest.mark.xdist_group("ui_browser")  # one worker starts the browser, once

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "timeline.png"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def log(tmp_path: Path) -> tuple[str, Log]:
    url = f"sqlite:///{tmp_path / 'saga.db'}"
    return url, write_log(url)


@pytest.fixture
def base(log: tuple[str, Log]) -> Iterator[str]:
    with serving(log[0], free_port()) as url:
        yield url


class Watched:
    """A page with what went wrong on it: uncaught errors and Content-Security-Policy violations."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.console: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def assert_clean(self) -> None:
        assert self.errors == []
        assert [m for m in self.console if "pwned" in m or "Content Security Policy" in m] == []
        assert self.page.evaluate("typeof window.pwned") == "undefined"


@pytest.fixture
def page(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    yield Watched(context.new_page())
    context.close()


def test_list_filter_open_a_saga_and_read_a_failed_attempt(page: Watched, base: str) -> None:
    p = page.page
    p.goto(base + "/")
    rows = p.locator("table.sagas tbody tr")
    expect(rows).to_have_count(6)
    completed = p.locator(".status-completed").first.evaluate("e => getComputedStyle(e).backgroundColor")
    compensated = p.locator(".status-compensated").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert completed != compensated

    p.select_option("select[name=status]", "compensated")
    p.fill("input[name=failed_step]", "ship")
    p.click("button[type=submit]")
    expect(rows).to_have_count(2)
    assert "status=compensated" in p.url and "failed_step=ship" in p.url
    # the saga id holding markup is shown as text, and nothing it holds ran
    expect(p.locator("a.saga-link", has_text=EVIL_ID)).to_have_count(1)
    assert p.locator("script").count() == 1  # htmx, nothing else

    p.locator("a.saga-link", has_text=EVIL_ID).click()
    expect(p.locator("h1 .saga-id")).to_have_text(EVIL_ID)
    assert p.url.endswith("/sagas/" + quote(EVIL_ID, safe="/"))
    failed = p.locator('a.attempt[data-outcome="failed"]')
    expect(failed).to_have_count(3)  # charge's first attempt, ship's, and unbook's first
    expect(p.locator('a.attempt[data-outcome="timed_out"]')).to_have_count(1)
    expect(p.locator("rect.bar-compensation")).to_have_count(3)
    expect(p.locator("line.delay")).to_have_count(3)  # two before charge's retries, one before unbook's

    url = p.url
    failed.nth(1).click()  # ship's
    detail = p.locator("#attempt-detail")
    expect(detail.locator(".error-type")).to_have_text("PermanentError")
    expect(detail.locator(".error-message")).to_have_text(EVIL_MESSAGE)
    assert p.url == url  # htmx swapped the detail in; no navigation
    assert p.locator("img").count() == 0 and p.locator("script").count() == 1
    failed.first.click()
    expect(detail.locator(".error-message")).to_have_text("bank busy")
    page.assert_clean()


def test_the_timeline_marks_an_operator_action_and_is_kept_as_a_screenshot(
    page: Watched, base: str, log: tuple[str, Log]
) -> None:
    p = page.page
    p.goto(f"{base}/sagas/{log[1].cancelled}")
    expect(p.locator("text.operator-label")).to_have_text("cancel by dana")
    expect(p.locator("line.operator")).to_have_count(1)
    p.locator('a.attempt[data-outcome="timed_out"]').first.click()
    detail = p.locator("#attempt-detail")
    expect(detail.locator(".error-type")).to_have_text("AttemptTimedOut")
    expect(detail.locator("h2")).to_contain_text("timed out")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    p.set_viewport_size({"width": 1100, "height": 720})
    p.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
    page.assert_clean()


def test_statistics_draw_failure_rates(page: Watched, base: str) -> None:
    p = page.page
    p.goto(base + "/")
    p.click("nav a[href='/stats']")
    expect(p.locator("h1")).to_have_text("Statistics")
    widths = {p.locator("svg.rates text.step").nth(i).text_content():
              float(p.locator("svg.rates rect.rate").nth(i).get_attribute("width") or "nan")
              for i in range(p.locator("svg.rates rect.rate").count())}
    steps = HTTP.get(base + "/api/stats", timeout=10).json()["steps"]
    rates = {k: v["failure_rate"] for k, v in steps.items()}
    assert widths == pytest.approx({k: r * 400 for k, r in rates.items()})
    assert widths["trip/charge"] > 0 and widths["trip/book"] == 0
    page.assert_clean()


def test_the_list_refreshes_itself_while_sagas_run(page: Watched, base: str, log: tuple[str, Log]) -> None:
    p = page.page
    p.goto(base + "/?name=trip")
    waiting = p.locator("tr", has=p.locator(f'a.saga-link:text-is("{log[1].waiting}")'))
    expect(waiting.locator(".status")).to_have_text("running")
    with EventStore(log[0]) as store:  # a worker finishes the saga while the page is open
        clock = VirtualClock()
        clock.advance(3600.0)
        with Coordinator(store, [trip()], clock=clock, poll_interval=60.0) as c:
            c.run(log[1].waiting)
    expect(waiting.locator(".status")).to_have_text("compensated", timeout=10_000)
    expect(p.locator("p.live")).to_have_count(0)  # nothing runs: the polling stopped
    page.assert_clean()

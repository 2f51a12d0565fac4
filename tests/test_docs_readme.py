"""README welcomes: it is short, its Quick start has two commands, its example, statuses and
guarantees are the guide's own, and it links to every page of the guide."""

from __future__ import annotations

import re

from tests.docs_pages import DOCS, ROOT, blocks, commands, nav_pages, read, section

README = read("README.md")


def _quick_start() -> list[str]:
    [block] = blocks(section(README, "## Quick start"), "sh")
    return commands(block)


def test_the_readme_is_short() -> None:
    assert len(README.splitlines()) < 250


def test_quick_start_has_exactly_two_commands() -> None:
    first, second = _quick_start()
    assert "saga demo" in first
    assert "pytest" in second
    ci = (ROOT / ".ci" / "run").read_text()
    assert second in ci, ".ci/run must run README's test command"


def test_the_test_command_installs_what_the_browser_tests_and_the_site_need() -> None:
    extras = re.search(r"\.\[([a-z,]+)\]", _quick_start()[1])
    assert extras is not None and {"dev", "ui"} <= set(extras[1].split(","))
    pyproject = (ROOT / "pyproject.toml").read_text()
    dev = pyproject.split("\ndev = [", 1)[1].split("]", 1)[0]
    assert '"mkdocs>=1.6"' in dev, "the dev extra must install what builds the site"
    assert re.search(r'\ndocs = \[\s*"mkdocs>=1\.6",\s*\]', pyproject)


def test_the_timeline_screenshot_is_shown() -> None:
    assert "](docs/timeline.png)" in README
    assert (DOCS / "timeline.png").read_bytes().startswith(b"\x89PNG")


def test_every_link_of_the_readme_leads_somewhere() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    assert links
    for link in links:
        path, _, anchor = link.partition("#")
        assert not path.startswith(("http:", "https:", "/")), link
        assert (ROOT / path).exists(), f"README links to {link}, which is not there"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", read(path), flags=re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert anchor in slugs, f"README links to {link}: no such heading"


def test_the_readme_links_to_every_page_of_the_guide() -> None:
    for page in nav_pages():
        assert f"](docs/{page})" in README, f"README does not link to docs/{page}"


def test_the_example_statuses_and_guarantees_are_the_guides() -> None:
    index = read("docs/index.md")
    example = blocks(section(README, "## A saga in code"), "python")
    assert len(example) == 1
    assert example[0] in blocks(index, "python"), "README's example differs from docs/index.md's"
    for heading in ("## Statuses", "## Guarantees"):
        assert section(README, heading) == section(index, heading), heading

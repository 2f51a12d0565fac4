"""The guide builds as a site: every page of docs/ is in mkdocs.yml's nav, and
``mkdocs build --strict`` passes, which fails on a link to a page or heading that is not there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.docs_pages import DOCS, ROOT, nav_pages


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
         "--site-dir", str(site)],
        cwd=config.parent, capture_output=True, text=True, timeout=120, check=False,
    )


def test_every_page_is_in_the_nav() -> None:
    assert sorted(nav_pages()) == sorted(p.name for p in DOCS.glob("*.md"))
    assert nav_pages()[0] == "index.md"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    result = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    for page in nav_pages():
        built = tmp_path / "site" / ("index.html" if page == "index.md" else f"{page[:-3]}/index.html")
        assert built.is_file(), page
    assert (tmp_path / "site" / "timeline.png").is_file()


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    copy = tmp_path / "project"
    (copy / "docs").mkdir(parents=True)
    (copy / "mkdocs.yml").write_text((ROOT / "mkdocs.yml").read_text())
    for page in DOCS.iterdir():
        (copy / "docs" / page.name).write_bytes(page.read_bytes())
    cli = copy / "docs" / "cli.md"
    cli.write_text(cli.read_text() + "\nSee [nothing](storage.md#no-such-heading).\n")
    result = _build(copy / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-heading" in result.stderr

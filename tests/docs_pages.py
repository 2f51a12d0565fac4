"""The documentation as the tests read it: README.md and the pages of the site (docs/, listed in
mkdocs.yml's nav), cut by heading, and the code blocks in them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

PUBLIC_MODULES = frozenset({"saga", "saga.adapters", "saga.testing", "saga.simulate"})
"""The modules the documentation's code may import from this library."""

_HEADING = re.compile(r"(#+) ")


def nav_pages() -> list[str]:
    """The pages of the site's nav, as paths under docs/ (``operating.md``), in nav order."""
    config = (ROOT / "mkdocs.yml").read_text()
    nav = config.split("\nnav:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^ +- (?:[^:\n]+: )?(\S+\.md)$", nav, flags=re.M)


def user_pages() -> list[str]:
    """README.md and the site's pages that teach the library (``docs/architecture.md`` maps the code
    for those who work on it, and may name what is private)."""
    return ["README.md", *(f"docs/{p}" for p in nav_pages() if p != "architecture.md")]


def read(page: str) -> str:
    """A page's text, by its path from the repository's root (``README.md``, ``docs/cli.md``)."""
    return (ROOT / page).read_text()


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (its whole line, such as ``## Quick start``) up to the next
    heading of its level or higher; lines in code blocks are never headings."""
    level = len(heading) - len(heading.lstrip("#"))
    found: list[str] | None = None
    fenced = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            if found is None:
                if line.rstrip("\n") == heading:
                    found = []
                continue
            marks = _HEADING.match(line)
            if marks and len(marks[1]) <= level:
                break
        if found is not None:
            found.append(line)
    assert found is not None, f"no heading {heading!r}"
    return "".join(found)


def blocks(text: str, lang: str) -> list[str]:
    """The code blocks of language ``lang`` in ``text``, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """The commands of a shell block: its lines without comments and blank lines."""
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]

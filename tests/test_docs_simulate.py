"""The guide's "Choosing a retry policy" stays true: its commands print its tables, and its
plot is the one the first command writes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.cli_run import ROOT, ok
from tests.docs_pages import read, section

SECTION = section(read("docs/policies.md"), "## Choosing a retry policy")
_REAL_TIME = re.compile(r" \(simulated in [0-9.]+s of real time\)")


def _pairs() -> list[tuple[str, str]]:
    """Each ``sh`` block of the section with the ``text`` block that follows it."""
    return re.findall(r"```sh\n(.*?)\n```\s*```text\n(.*?)\n```", SECTION, flags=re.S)


def test_the_commands_print_the_tables(tmp_path: Path) -> None:
    pairs = _pairs()
    assert len(pairs) == 2
    for command, shown in pairs:
        argv = shlex.split(command)
        assert argv[:2] == ["saga", "simulate"]
        if "--plot" in argv:  # written here, not over the committed picture
            at = argv.index("--plot") + 1
            shown_plot = ROOT / argv[at]  # run from the root; the page beside it shows it
            assert shown_plot.is_file() and shown_plot.parent == ROOT / "docs"
            assert f"]({shown_plot.name})" in SECTION
            argv[at] = str(tmp_path / "plot.png")
        printed = _REAL_TIME.sub("", ok(*argv[1:]))
        assert printed.splitlines()[: len(shown.splitlines())] == \
            _REAL_TIME.sub("", shown).splitlines(), command
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")

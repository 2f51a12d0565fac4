"""Colour for the text timeline on a terminal: outcomes in green, yellow and red.

The timeline's lines are escaped before they get here, so the only control
sequences in the output are the ones added below. Colour is used only when
the output is a terminal and ``NO_COLOR`` is not set (https://no-color.org);
piped output stays plain text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TextIO

__all__ = ["paint", "wanted"]

_RESET = "\033[0m"
_BOLD = "\033[1m"
_DIM = "\033[2m"
_RED = "\033[31m"
_GREEN = "\033[32m"
_YELLOW = "\033[33m"
_CYAN = "\033[36m"

_STATUS = {
    "completed": _GREEN, "compensated": _YELLOW, "failed": _RED,
    "running": _CYAN, "compensating": _YELLOW,
}

# "  +   1.234s  subject  text": the subject is a step name or "saga" (no spaces), and the
# start of the text is the timeline's own wording, never a value from a service.
_EVENT = re.compile(r"^(  \+\s*-?[\d.]+s  )(\S+)(\s+)(.*)$")
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(compensation )?attempts? [\d,\u2013]+ (timed out|ended in doubt)"), _YELLOW),
    (re.compile(r"^(compensation )?attempts? [\d,\u2013]+ failed"), _RED),
    (re.compile(r"^(compensation )?attempt \d+ started"), _DIM),
    (re.compile(r"^(succeeded on attempt|completed$|compensated on attempt)"), _GREEN),
    (re.compile(r"^(compensating:|compensated$)"), _YELLOW),
    (re.compile(r"^(failed:|compensation gave up)"), _RED),
    (re.compile(r"^operator asked"), _CYAN),
)


def wanted(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether to colour what goes to ``stream``: a terminal, and neither ``NO_COLOR`` nor
    ``TERM=dumb`` is set."""
    env = os.environ if environ is None else environ
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and not env.get("NO_COLOR") and env.get("TERM") != "dumb"


def paint(lines: Iterable[str]) -> Iterator[str]:
    """The timeline's lines (as :func:`saga.inspection.timeline.show` yields them) with colour added."""
    first = True
    for line in lines:
        if first:
            first = False
            head, _, status = line.rpartition("  ")
            colour = _STATUS.get(status)
            yield f"{_BOLD}{head}{_RESET}  {colour}{status}{_RESET}" if colour else line
            continue
        match = _EVENT.match(line)
        if match is None:
            yield line
            continue
        at, subject, gap, text = match.groups()
        colour = next((c for pattern, c in _RULES if pattern.match(text)), None)
        body = f"{colour}{text}{_RESET}" if colour else text
        yield f"{_DIM}{at}{_RESET}{_BOLD}{subject}{_RESET}{gap}{body}"

"""The commands that read the log as data: ``saga list``, ``saga stats``, ``saga export`` and
``saga audit verify|head``.

Each parses its arguments, asks the store's read side (:class:`saga.store.EventLog`), and
prints. They
only read: the store is opened with ``schema="require"`` (no file, no schema,
no journal switch is written), and a file named by ``--output`` is created
only once the arguments and the database have been accepted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from saga.errors import InvalidInput
from saga.inspection.stats import stats_table
from saga.secrets.keys import redact_json
from saga.state import SagaStatus
from saga.store import EventStore
from saga.store.reads import SagaRow
from saga.store.sqlite import SQLiteEventStore
from saga.text import count, escape, printable_json, shorten
from saga.timespec import parse_time, parse_window

__all__ = ["add_commands"]

EXPORT_COLUMNS = ("saga_id", "seq", "type", "recorded_at", "data", "hash")


def _reader(args: argparse.Namespace) -> EventStore:
    return EventStore(args.db, schema="require")


def _compact(value: Any) -> str:
    return printable_json(value)  # what a terminal would obey is escaped, the JSON unchanged


def _cmd_list(args: argparse.Namespace) -> int:
    if args.status is not None and args.status not in {s.value for s in SagaStatus}:
        choices = ", ".join(s.value for s in SagaStatus)
        raise InvalidInput(f"unknown status {shorten(args.status)!r}; choose from {choices}")
    since, until = parse_window(args.since, args.until, now=datetime.now(UTC))
    with _reader(args) as store:
        page = store.list_sagas(status=args.status, name=args.name, failed_step=args.failed_step,
                                error_type=args.error_type, since=since, until=until,
                                limit=args.limit, cursor=args.cursor)
    if args.json:
        for r in page.rows:
            print(_compact(r.to_json()))
    else:
        for line in _aligned([_cells(r) for r in page.rows]):
            print(line)
    if page.cursor is not None:
        print(f"more: saga list ... --cursor {page.cursor}", file=sys.stderr)
    return 0


def _cells(r: SagaRow) -> list[str]:
    failed = "" if r.failed_step is None else f"failed at {r.failed_step}"
    parked = "" if r.parked is None else f"parked: {shorten(r.parked, 120)}"
    return [escape(cell) for cell in (
        r.saga_id, f"{r.name} v{r.version}", r.status,
        f"started {r.started_at.isoformat(timespec='seconds')}",
        f"updated {r.updated_at.isoformat(timespec='seconds')}", failed, parked)]


def _aligned(rows: list[list[str]]) -> list[str]:
    """``rows`` of cells as lines, each column as wide as its widest cell."""
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def _cmd_stats(args: argparse.Namespace) -> int:
    since = None if args.since is None else parse_time(args.since, now=datetime.now(UTC),
                                                        option="--since")
    with _reader(args) as store:
        stats = store.stats(name=args.name, since=since)
    if args.json:
        print(_compact(stats.to_json()))
    else:
        for line in stats_table(stats):
            print(escape(line))
    return 0


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    try:
        out = Path(path).open("w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as e:
        raise InvalidInput(f"cannot write {shorten(path)!r}: {e.strerror}") from None
    with out:
        yield out


def _not_the_database(store: EventStore, output: str | None) -> None:
    """Refuse an ``--output`` that is the database being read, or a file of it."""
    if output is None or not isinstance(store, SQLiteEventStore):
        return
    target = Path(output)
    for path in store.files():
        same = target.resolve() == path.resolve()
        with contextlib.suppress(OSError):  # a hard link, or a file that is not there
            same = same or target.samefile(path)
        if same:
            raise InvalidInput(f"--output {shorten(output)!r} is a file of the database being "
                               f"exported ({path}): write the export elsewhere")


def _cmd_export(args: argparse.Namespace) -> int:
    since = None if args.since is None else parse_time(args.since, now=datetime.now(UTC),
                                                        option="--since")
    with _reader(args) as store:
        _not_the_database(store, args.output)
        rows = store.export(since=since)
        first = next(rows, None)  # the database answered: only now is the output created
        with _output(args.output) as out:
            if args.format == "csv":
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(EXPORT_COLUMNS)
            n = 0
            for r in itertools.chain([first] if first is not None else [], rows):
                data = r.to_json()
                data["data"] = redact_json(data["data"])  # secrets show as stars, as everywhere
                if args.format == "csv":
                    writer.writerow([*(data[k] for k in EXPORT_COLUMNS[:4]),
                                     _compact(data["data"]), data["hash"]])
                else:
                    out.write(_compact(data) + "\n")
                n += 1
    if args.output is not None:
        print(f"{count(n, 'event')} written to {escape(args.output)}", file=sys.stderr)
    return 0


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    with _reader(args) as store:
        report = store.verify(args.id, head=args.head)
    for line in report.lines():  # one for each saga tampered with
        print(escape(line))
    return 0 if report.ok else 1


def _cmd_audit_head(args: argparse.Namespace) -> int:
    with _reader(args) as store:
        print(store.head())
    return 0


def add_commands(sub: Any, *, saga_id: Any, positive_int: Any) -> None:
    """Add ``list``, ``stats``, ``export`` and ``audit`` to the ``saga`` command's subparsers
    (``saga_id`` and ``positive_int``: the command line's argument types)."""
    ls = sub.add_parser("list", help="list sagas, newest first")
    ls.add_argument("--status", default=None)
    ls.add_argument("--name", default=None)
    ls.add_argument("--failed-step", default=None, metavar="STEP",
                    help="sagas whose STEP failed for good")
    ls.add_argument("--error-type", default=None, metavar="TYPE",
                    help="sagas with an attempt that failed with TYPE")
    ls.add_argument("--since", default=None, metavar="T",
                    help="started at or after T (ISO 8601, or ago: 30m, 2h, 7d)")
    ls.add_argument("--until", default=None, metavar="T", help="started before T")
    ls.add_argument("--limit", type=positive_int, default=50)
    ls.add_argument("--cursor", default=None, help="the next page, as the previous one printed")
    ls.add_argument("--json", action="store_true", help="one JSON object per saga per line")
    ls.set_defaults(func=_cmd_list)

    st = sub.add_parser("stats", help="outcomes per saga, attempts and durations per step")
    st.add_argument("--name", default=None)
    st.add_argument("--since", default=None, metavar="T", help="sagas and attempts started since T")
    st.add_argument("--json", action="store_true", help="one JSON object")
    st.set_defaults(func=_cmd_stats)

    ex = sub.add_parser("export", help="every event, one row each, as JSON lines or CSV")
    ex.add_argument("--since", default=None, metavar="T", help="events recorded at or after T")
    ex.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    ex.add_argument("--output", default=None, metavar="FILE", help="default: standard output")
    ex.set_defaults(func=_cmd_export)

    au = sub.add_parser("audit", help="check that the log is as it was written")
    au_sub = au.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    v = au_sub.add_parser("verify", help="recompute every hash chain")
    v.add_argument("id", metavar="ID", nargs="?", default=None, type=saga_id)
    v.add_argument("--head", default=None, metavar="HEAD",
                   help="what `saga audit head` printed earlier, kept elsewhere")
    v.set_defaults(func=_cmd_audit_verify)
    au_sub.add_parser("head", help="one digest over every saga's last event, and the position "
                      "of the log it covers"
                      ).set_defaults(func=_cmd_audit_head)

"""The ``saga`` command: parses arguments, calls the library, prints.

Every failure the user can cause ends with one line on stderr and a non-zero
exit (1 for errors from the library, 2 for malformed arguments), and writes
nothing to the log.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import NoReturn

from saga.cli.arguments import positive_int
from saga.cli.colour import paint, wanted
from saga.cli.log import add_commands as add_log_commands
from saga.cli.operate import add_commands as add_operator_commands
from saga.cli.operate import json_argument
from saga.cli.simulate import add_parser as add_simulate_parser
from saga.cli.targets import load_targets
from saga.coordinator import Coordinator
from saga.errors import SagaError, TargetError
from saga.inspection.history import write_json
from saga.inspection.timeline import show, stream
from saga.secrets.keys import generate_key, resolve_key_ring
from saga.secrets.sealing import redacted, require_keys
from saga.store import EventStore, default_url, redact
from saga.text import count, escape, shorten

__all__ = ["load_targets", "main"]


def _open(args: argparse.Namespace, *, create: bool) -> EventStore:
    """Open the store; ``create=False``: opening writes nothing (no schema, no file)."""
    return EventStore(args.db, schema="create" if create else "require",
                      encryption_key=args.encryption_key)


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    with EventStore(args.db, schema="skip") as store:
        revision = store.upgrade()
    print(f"database at {redact(args.db)} is at schema revision {revision}")
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    sagas = load_targets(args.targets)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("saga").info("signal %d: finishing current attempts, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with _open(args, create=True) as store, Coordinator(store, sagas=sagas, lease=args.lease
                                                         ) as coordinator:
        names = ", ".join(sorted({s.name for s in sagas}))
        print(f"worker {coordinator.worker_id}: driving {names}", file=sys.stderr)
        n = coordinator.work(until_idle=args.until_idle, concurrency=args.concurrency, stop=stop)
        held = coordinator.held_elsewhere() if args.until_idle and not stop.is_set() else []
        now = coordinator.clock.now()
    print(f"worker {coordinator.worker_id}: {count(n, 'drive')}", file=sys.stderr)
    if held:  # what it left: sagas a dead (or busy) worker holds until their lease expires
        until = held[0].lease_expires_at
        assert until is not None
        whose = ("1 saga held by another worker's lease" if len(held) == 1
                 else f"{count(len(held), 'saga')} held by other workers' leases, the first")
        print(f"worker {coordinator.worker_id}: {whose} until "
              f"{until.isoformat(timespec='seconds')}, in {math.ceil((until - now).total_seconds())} s",
              file=sys.stderr)
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    sagas = load_targets([args.target])
    value = json_argument(args.input, "--input")
    names = {s.name for s in sagas}
    if args.name not in names:
        raise TargetError(f"unknown saga {shorten(args.name)!r} in {shorten(args.target)} "
                          f"(found: {', '.join(sorted(names))})")
    newest = max((s for s in sagas if s.name == args.name), key=lambda s: s.version)
    newest.validate_input(value)  # fail before the store is opened (or created)
    require_keys(newest, resolve_key_ring(args.encryption_key))
    with _open(args, create=True) as store, Coordinator(store, sagas=sagas) as coordinator:
        saga_id = coordinator.start(args.name, value, saga_id=args.id)
    print(escape(saga_id))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    with _open(args, create=False) as store:
        if args.json:  # written as the log is read, a page at a time
            write_json(args.id, redacted(stream(store, args.id)), sys.stdout)
            print()
            return 0
        lines = show(store, args.id)
        for line in paint(lines) if wanted(sys.stdout) else lines:
            print(line)
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    with _open(args, create=False) as store:
        for e in redacted(stream(store, args.id)):
            if args.json:
                print(json.dumps(e.to_json(), separators=(",", ":")))
            else:
                print(escape(f"{e.seq:>4}  {e.recorded_at.isoformat(timespec='milliseconds')}  "
                             f"{e.type:<27}  {json.dumps(e.data)}"))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from saga.cli.demo import main as demo

    key = args.encryption_key
    if resolve_key_ring(key) is None:
        key = generate_key()
        print("no encryption key is set: the card numbers are sealed under a new key for this run "
              "only (set SAGA_ENCRYPTION_KEY to keep one; `saga key generate` prints one)",
              file=sys.stderr)
    with EventStore(args.db, encryption_key=key) as store:
        demo(store)
    print(f"the log is in {redact(args.db)}; "
          "try `saga list` and `saga show ID`")
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from saga import ui

    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print(f"saga: error: {ui.INSTALL_HINT}", file=sys.stderr)
        return 1
    from saga.ui.data import open_store

    with open_store(args.db) as store:
        print(f"saga ui: serving {redact(args.db)} read-only on http://{_host_port(args.host, args.port)}/ "
              "(Ctrl-C stops)", file=sys.stderr)
        ui.serve(store, host=args.host, port=args.port)
    return 0


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cmd_key_generate(args: argparse.Namespace) -> int:
    print(generate_key())
    return 0


_LINE = 1000
"""The longest error message printed whole; longer ones are cut (a net under the values
each message shortens itself)."""

_MAX_ID = 200
"""The longest saga id the store accepts: a longer one is refused before it is echoed."""


def _saga_id(text: str) -> str:
    if len(text) > _MAX_ID:
        raise argparse.ArgumentTypeError(
            f"{shorten(text)!r} is not a saga id (at most {_MAX_ID} characters)"
        )
    return text


def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1 to 65535)")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shorten(text)!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{shorten(text)} must be positive")
    return value


class _Escaping(logging.Formatter):
    """Log lines with the text they quote (a step's error, a saga id) escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return escape(super().formatMessage(record))


class _Parser(argparse.ArgumentParser):
    """argparse, with its error messages (which quote what was typed) made safe to print."""

    def error(self, message: str) -> NoReturn:
        super().error(escape(shorten(message, _LINE)))


def parser() -> argparse.ArgumentParser:
    """The command line's grammar."""
    p = _Parser(prog="saga", description="Run and inspect sagas.")
    p.add_argument("--db", default=default_url(),
                   help="database URL (default: $SAGA_DATABASE_URL or sqlite:///saga.db)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what workers do")
    p.add_argument("--encryption-key", default=None, metavar="KEY",
                   help="key(s) for secret fields, comma-separated, the first encrypts (default: "
                   "$SAGA_ENCRYPTION_KEY, which other users cannot see in the process list)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="manage the database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply the schema migrations").set_defaults(func=_cmd_db_upgrade)

    w = sub.add_parser("worker", help="drive every due saga of the given targets")
    w.add_argument("targets", nargs="+", metavar="TARGET", help="module or module:attribute")
    w.add_argument("--concurrency", type=positive_int, default=1)
    w.add_argument("--until-idle", action="store_true",
                   help="exit once no saga is due now or within half a second")
    w.add_argument("--lease", type=_positive_float, default=30.0, help="lease in seconds")
    w.set_defaults(func=_cmd_worker)

    s = sub.add_parser("start", help="start a saga")
    s.add_argument("target", metavar="TARGET")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--input", required=True, help="JSON, or @file holding JSON")
    s.add_argument("--id", default=None, type=_saga_id,
                   help="saga id (idempotent); default: a new one")
    s.set_defaults(func=_cmd_start)

    add_log_commands(sub, saga_id=_saga_id, positive_int=positive_int)  # list, stats, export, audit

    sh = sub.add_parser("show", help="a saga's timeline")
    sh.add_argument("id", metavar="ID", type=_saga_id)
    sh.add_argument("--json", action="store_true", help="the timeline as one JSON object")
    sh.set_defaults(func=_cmd_show)

    h = sub.add_parser("history", help="a saga's events")
    h.add_argument("id", metavar="ID", type=_saga_id)
    h.add_argument("--json", action="store_true", help="one JSON object per event per line")
    h.set_defaults(func=_cmd_history)

    add_operator_commands(sub, _saga_id)  # retry, cancel, skip, fork, check

    sub.add_parser("demo", help="book two trips with injected faults").set_defaults(func=_cmd_demo)

    u = sub.add_parser("ui", help="serve a read-only web timeline of the log (needs the ui extra)")
    u.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    u.add_argument("--port", type=_port, default=8080)
    u.set_defaults(func=_cmd_ui)
    k = sub.add_parser("key", help="manage encryption keys for secret fields")
    k_sub = k.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    k_sub.add_parser("generate", help="print a new random key").set_defaults(func=_cmd_key_generate)
    add_simulate_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``saga`` command."""
    for stream_ in (sys.stdout, sys.stderr):
        if isinstance(stream_, io.TextIOWrapper):  # what the terminal cannot show is escaped
            stream_.reconfigure(errors="backslashreplace")
    args = parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_Escaping("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SagaError as e:
        print(f"saga: error: {escape(shorten(str(e), _LINE))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

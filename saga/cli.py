"""The ``saga`` command: parses arguments, calls the library, prints.

Every failure the user can cause ends with one line on stderr and a non-zero
exit (1 for errors from the library, 2 for malformed arguments), and writes
nothing to the log.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .coordinator import Coordinator
from .definition import Saga
from .errors import InvalidInput, SagaError, TargetError
from .state import SagaStatus
from .store import EventStore, default_url, redact
from .timeline import render

__all__ = ["load_targets", "main"]


def load_targets(targets: Sequence[str]) -> list[Saga]:
    """Every :class:`Saga` found in each ``module`` or ``module:attribute`` target."""
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    found: dict[int, Saga] = {}
    for target in targets:
        module_name, _, attr = target.partition(":")
        if not module_name:
            raise TargetError(f"target {target!r}: expected module or module:attribute")
        try:
            module = importlib.import_module(module_name)
        except Exception as e:
            raise TargetError(f"target {target!r} does not import: {type(e).__name__}: {e}") from e
        if attr:
            try:
                obj: Any = module
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except AttributeError:
                raise TargetError(f"target {target!r}: {module_name} has no attribute {attr!r}") from None
            candidates = list(obj) if isinstance(obj, list | tuple | set) else [obj]
        else:
            candidates = list(vars(module).values())
        sagas = [c for c in candidates if isinstance(c, Saga)]
        if not sagas:
            raise TargetError(f"target {target!r} holds no saga.Saga")
        for s in sagas:
            found[id(s)] = s
    return list(found.values())


def _read_input(text: str) -> Any:
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text()
        except OSError as e:
            raise InvalidInput(f"cannot read input file {str(path)!r}: {e.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"--input is not valid JSON: {e}") from None


def _open(args: argparse.Namespace, *, create: bool) -> EventStore:
    """Open the store; ``create=False``: opening writes nothing (no schema, no file)."""
    return EventStore(args.db, schema="create" if create else "require")


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    store = EventStore(args.db, schema="skip")
    revision = store.upgrade()
    store.close()
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
    store = EventStore(args.db)
    with Coordinator(store, sagas=sagas, lease=args.lease) as coordinator:
        names = ", ".join(sorted({s.name for s in sagas}))
        print(f"worker {coordinator.worker_id}: driving {names}", file=sys.stderr)
        n = coordinator.work(until_idle=args.until_idle, concurrency=args.concurrency, stop=stop)
    print(f"worker {coordinator.worker_id}: {n} drives", file=sys.stderr)
    store.close()
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    sagas = load_targets([args.target])
    value = _read_input(args.input)
    names = {s.name for s in sagas}
    if args.name not in names:
        raise TargetError(
            f"unknown saga {args.name!r} in {args.target} (found: {', '.join(sorted(names))})"
        )
    newest = max((s for s in sagas if s.name == args.name), key=lambda s: s.version)
    newest.validate_input(value)  # fail before the store is opened (or created)
    store = EventStore(args.db)
    coordinator = Coordinator(store, sagas=sagas)
    saga_id = coordinator.start(args.name, value, saga_id=args.id)
    print(saga_id)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    if args.status is not None and args.status not in {s.value for s in SagaStatus}:
        choices = ", ".join(s.value for s in SagaStatus)
        raise InvalidInput(f"unknown status {args.status!r}; choose from {choices}")
    store = _open(args, create=False)
    rows = store.find(status=args.status, name=args.name, limit=args.limit)
    for r in rows:
        wake = "" if r.wake_at is None else f"  next {r.wake_at.isoformat(timespec='seconds')}"
        print(f"{r.saga_id}  {r.name} v{r.version}  {r.status.value}  "
              f"{r.updated_at.isoformat(timespec='seconds')}{wake}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    store = _open(args, create=False)
    print(render(args.id, store.load(args.id)))
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    store = _open(args, create=False)
    for e in store.load(args.id):
        if args.json:
            print(json.dumps(e.to_json(), separators=(",", ":")))
        else:
            print(f"{e.seq:>4}  {e.recorded_at.isoformat(timespec='milliseconds')}  {e.type:<27}  "
                  f"{json.dumps(e.data)}")
    return 0


def _cmd_retry(args: argparse.Namespace) -> int:
    store = _open(args, create=False)
    view = Coordinator(store).retry(args.id, reason=args.reason)
    print(f"{args.id}: {view.status.value} (a worker resumes its compensation)")
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    store = _open(args, create=False)
    view = Coordinator(store).cancel(args.id, reason=args.reason)
    print(f"{args.id}: cancel requested ({view.status.value}; a worker compensates it)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import main as demo

    store = EventStore(args.db)
    demo(store)
    print(f"the log is in {redact(args.db)}; "
          "try `saga list` and `saga show ID`")
    store.close()
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line's grammar."""
    p = argparse.ArgumentParser(prog="saga", description="Run and inspect sagas.")
    p.add_argument("--db", default=default_url(),
                   help="database URL (default: $SAGA_DATABASE_URL or sqlite:///saga.db)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what workers do")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="manage the database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply the schema migrations").set_defaults(func=_cmd_db_upgrade)

    w = sub.add_parser("worker", help="drive every due saga of the given targets")
    w.add_argument("targets", nargs="+", metavar="TARGET", help="module or module:attribute")
    w.add_argument("--concurrency", type=_positive_int, default=1)
    w.add_argument("--until-idle", action="store_true", help="exit once no saga is due")
    w.add_argument("--lease", type=_positive_float, default=30.0, help="lease in seconds")
    w.set_defaults(func=_cmd_worker)

    s = sub.add_parser("start", help="start a saga")
    s.add_argument("target", metavar="TARGET")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--input", required=True, help="JSON, or @file holding JSON")
    s.add_argument("--id", default=None, help="saga id (idempotent); default: a new one")
    s.set_defaults(func=_cmd_start)

    ls = sub.add_parser("list", help="list sagas, most recently updated first")
    ls.add_argument("--status", default=None)
    ls.add_argument("--name", default=None)
    ls.add_argument("--limit", type=_positive_int, default=50)
    ls.set_defaults(func=_cmd_list)

    sh = sub.add_parser("show", help="a saga's timeline")
    sh.add_argument("id", metavar="ID")
    sh.set_defaults(func=_cmd_show)

    h = sub.add_parser("history", help="a saga's events")
    h.add_argument("id", metavar="ID")
    h.add_argument("--json", action="store_true", help="one JSON object per event per line")
    h.set_defaults(func=_cmd_history)

    r = sub.add_parser("retry", help="resume a failed saga's compensation")
    r.add_argument("id", metavar="ID")
    r.add_argument("--reason", default="")
    r.set_defaults(func=_cmd_retry)

    c = sub.add_parser("cancel", help="stop a running saga and compensate it")
    c.add_argument("id", metavar="ID")
    c.add_argument("--reason", default="")
    c.set_defaults(func=_cmd_cancel)

    sub.add_parser("demo", help="book two trips with injected faults").set_defaults(func=_cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``saga`` command."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SagaError as e:
        print(f"saga: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

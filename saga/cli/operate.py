"""The operators' commands of ``saga``: retry and cancel (one saga, or many by filter), skip,
fork, and the pre-deploy check. :mod:`saga.cli.command` registers them with :func:`add_commands`.

Every action takes ``--by`` (default: the login user) and ``--reason``, and
records both in its event. ``skip`` and ``fork`` take the saga's TARGET
before its ID, as ``start`` does: a ``--result`` or ``--input`` is checked
against the definition found there and its secret fields sealed, and without
a TARGET one is refused (it could be neither).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from saga.cli.targets import load_targets
from saga.codec import InvalidValue, from_json_text
from saga.definition import Saga
from saga.errors import InvalidInput
from saga.operators import actions as operator
from saga.operators import bulk
from saga.operators.actions import Request
from saga.operators.check import check
from saga.operators.fork import SAME_INPUT, fork
from saga.state import SagaStatus
from saga.store import EventStore
from saga.text import count, escape, shorten
from saga.timespec import parse_window

__all__ = ["add_commands"]

_DONE = {"retry": "retried", "cancel": "cancelled"}


def _open(args: argparse.Namespace) -> EventStore:
    # opening writes nothing (no schema, no file); the keys seal and open what skip and fork write
    return EventStore(args.db, schema="require", encryption_key=args.encryption_key)


def json_argument(text: str, option: str) -> Any:
    """The JSON value a command-line ``option`` gives, inline or as ``@file`` (UTF-8), if the
    log can store it (:func:`saga.codec.from_json_text`); else :class:`~saga.InvalidInput`
    naming the option, in one line."""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InvalidInput(
                f"cannot read {option} file {shorten(str(path))!r}: {e.strerror}") from None
        try:
            text = data.decode("utf-8-sig")  # a byte-order mark, as some editors write, is not data
        except UnicodeDecodeError as e:
            raise InvalidInput(f"{option} file {shorten(str(path))!r} is not UTF-8: byte "
                               f"0x{data[e.start]:02x} at offset {e.start}") from None
    try:
        return from_json_text(text)
    except InvalidValue as e:
        raise InvalidInput(f"{option}: {e}") from None


def _filters(args: argparse.Namespace, now: Any) -> bulk.Filters:
    status = None
    if args.status is not None:
        try:
            status = SagaStatus(args.status)
        except ValueError:
            choices = ", ".join(s.value for s in SagaStatus)
            raise InvalidInput(
                f"unknown status {shorten(args.status)!r}; choose from {choices}") from None
    since, until = parse_window(args.since, args.until, now=now)
    return bulk.Filters(status=status, name=args.name, failed_step=args.failed_step,
                        error_type=args.error_type, since=since, until=until)


def _request(kind: Request) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        by, reason = operator.check_by(args.by), operator.check_reason(args.reason)
        given = [o for o in ("status", "name", "failed_step", "error_type", "since", "until")
                 if getattr(args, o) is not None]
        if args.id is not None:
            if given or args.dry_run:
                extra = ", ".join("--" + o.replace("_", "-") for o in given) or "--dry-run"
                raise InvalidInput(f"give a saga ID or filters, not both ({extra} with an ID)")
            with _open(args) as store:
                view = operator.request(store, store.default_clock(), args.id, kind,
                                        reason=reason, by=by)[0]
            if kind == "retry":  # the single-saga forms print what they always printed
                print(f"{escape(args.id)}: {view.status.value} (a worker " + (
                    "resumes its compensation)" if view.status is SagaStatus.COMPENSATING
                    else "tries it again now)"))
            else:
                print(f"{escape(args.id)}: cancel requested ({view.status.value}; "
                      "a worker compensates it)")
            return 0
        if not given:
            raise InvalidInput(f"saga {kind} needs a saga ID, or at least one filter (--status, "
                               "--name, --failed-step, --error-type, --since, --until)")
        with _open(args) as store:
            clock = store.default_clock()
            ids = list(bulk.select(store, _filters(args, clock.now()), kind))
            if args.dry_run:
                for saga_id in ids:
                    print(escape(saga_id))
                print(f"dry run: {count(len(ids), 'saga')} would be {_DONE[kind]}; "
                      "nothing was written")
                return 0
            result = bulk.act(store, clock, ids, kind, reason=reason, by=by)
        for saga_id in result.acted:
            print(escape(f"{saga_id}: {_DONE[kind]}"))
        for saga_id, why in result.skipped:
            print(escape(f"{saga_id}: skipped ({why})"))
        print(f"{len(result.acted)} acted on, {len(result.skipped)} skipped")
        return 0

    return command


def _definitions(args: argparse.Namespace, option: str, given: bool) -> list[Saga]:
    """The sagas in the command's TARGET; a value for ``option`` without a TARGET is refused."""
    if args.target is None:
        if given:
            raise InvalidInput(
                f"{option} needs the saga's TARGET, to check it against the saga's models and seal "
                f"its secret fields: saga {args.command} TARGET ID ... {option} ...")
        return []
    return load_targets([args.target])


def _cmd_skip(args: argparse.Namespace) -> int:
    sagas = _definitions(args, "--result", args.result is not None)
    result = None if args.result is None else json_argument(args.result, "--result")
    with _open(args) as store:
        view = operator.skip(store, store.default_clock(), args.id, args.step, result=result,
                             sagas=sagas, reason=args.reason, by=args.by)
    print(escape(f"{args.id}: step {args.step} skipped ({view.status.value}; "
                 "a worker continues with the next step)"))
    return 0


def _cmd_fork(args: argparse.Namespace) -> int:
    sagas = _definitions(args, "--input", args.input is not None)
    value = SAME_INPUT if args.input is None else json_argument(args.input, "--input")
    with _open(args) as store:
        new_id = fork(store, store.default_clock(), args.id, from_step=args.from_step,
                      input=value, sagas=sagas, new_id=args.new_id, reason=args.reason,
                      by=args.by)
    print(escape(new_id))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    sagas = load_targets(args.targets)
    with _open(args) as store:
        problems = list(check(store, sagas))
    if args.json:
        print(json.dumps([p.to_json() for p in problems], indent=2))
    else:
        for p in problems:
            print(escape(f"{p.saga_id}  {p.name} v{p.version}  {p.status.value}  {p.kind}: "
                         f"{p.reason}"))
        print(f"{count(len(problems), 'saga')} in flight cannot continue" if problems
              else "every saga in flight can continue")
    return 1 if problems else 0


def _target(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", nargs="?", default=None,
                   help="module or module:attribute holding the saga's definition (checks the "
                   "value given and seals its secret fields)")


def _who(p: argparse.ArgumentParser) -> None:
    p.add_argument("--by", default=None, help="who acts (default: the login user)")
    p.add_argument("--reason", default="", help="why, recorded in the log")


def add_commands(
    sub: argparse._SubParsersAction[Any],
    saga_id: Callable[[str], str],
) -> None:
    """Register ``retry``, ``cancel``, ``skip``, ``fork`` and ``check`` on ``sub``."""
    helps = {"retry": "resume a failed saga's compensation, or try a parked saga again now "
                      "(one, or many by filter)",
             "cancel": "stop a running saga and compensate it (one, or many by filter)"}
    kind: Request
    for kind in ("retry", "cancel"):
        r = sub.add_parser(kind, help=helps[kind])
        r.add_argument("id", metavar="ID", type=saga_id, nargs="?", default=None,
                       help="the saga; omit it and give filters to act on many")
        for option in ("--status", "--name", "--failed-step", "--error-type"):
            r.add_argument(option, default=None)
        r.add_argument("--since", default=None, help="started at or after (ISO 8601, or 2h, 7d)")
        r.add_argument("--until", default=None, help="started at or before")
        r.add_argument("--dry-run", action="store_true",
                       help="print the ids that would be acted on, and act on none")
        _who(r)
        r.set_defaults(func=_request(kind))

    s = sub.add_parser("skip", help="mark a saga's stuck step as done with the given result")
    _target(s)
    s.add_argument("id", metavar="ID", type=saga_id)
    s.add_argument("step", metavar="STEP")
    s.add_argument("--result", default=None,
                   help="JSON, or @file holding JSON; needs TARGET (default: no result)")
    _who(s)
    s.set_defaults(func=_cmd_skip)

    f = sub.add_parser("fork", help="start a copy of a saga that runs from one of its steps")
    _target(f)
    f.add_argument("id", metavar="ID", type=saga_id)
    f.add_argument("--from", dest="from_step", required=True, metavar="STEP")
    f.add_argument("--input", default=None,
                   help="JSON, or @file; needs TARGET (default: the original's)")
    f.add_argument("--id", dest="new_id", default=None, type=saga_id,
                   help="the fork's id (default: a new one)")
    _who(f)
    f.set_defaults(func=_cmd_fork)

    c = sub.add_parser("check", help="report the sagas in flight that TARGET's definitions "
                                      "cannot continue (exit 1 if any)")
    c.add_argument("targets", nargs="+", metavar="TARGET", help="module or module:attribute")
    c.add_argument("--json", action="store_true", help="the problems as a JSON list")
    c.set_defaults(func=_cmd_check)

"""The web application: read-only pages over the log, and the same data as JSON under ``/api``.

Routes (every page has its JSON twin):

- ``/`` and ``/api/sagas``: the list, filtered as ``saga list`` filters;
  ``/rows`` is the list's table alone, which the page polls while sagas run;
- ``/sagas/{id}?page=K`` and ``/api/sagas/{id}?page=K``: one page of a saga's
  timeline (:data:`saga.ui.data.PAGE_ATTEMPTS` attempts), with links to the
  next and previous; ``/attempt?saga=ID&seq=S`` and ``/api/attempt?...``: the
  attempt that event ``S`` of the saga's log starts, read alone;
- ``/stats`` and ``/api/stats``: statistics per saga name and per step.

Each route takes only its own query parameters, each checked once
(:mod:`saga.ui.params`): anything else is a 400 of one line. Only ``GET`` and
``HEAD`` are served (anything else is 405), only for the ``Host`` names the
server was started for (anything else is 400, so a page on another site cannot
reach it by rebinding a domain to loopback), with a Content-Security-Policy
that allows only the server's own script and styles.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saga.errors import InvalidInput, SagaNotFound
from saga.store.base import EventLog
from saga.text import shorten
from saga.ui import chart, data, params
from saga.ui.params import Query

__all__ = ["CSP", "allowed_hosts", "create_app"]

HERE = Path(__file__).resolve().parent

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
"""The Content-Security-Policy of every response: the server's own script and styles, nothing inline."""

_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


_MAX_NUMBER = 2**31 - 1
"""The largest page or event number a link can name (the log's ``seq`` is a 32-bit integer)."""

_LINE = 300
"""The longest error message a page shows whole (a net under the values each message shortens)."""


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The ``Host`` header values the server answers: loopback names and ``host``, with ``port``."""
    names = {"127.0.0.1", "localhost", "[::1]", f"[{host}]" if ":" in host else host}
    values = {f"{n}:{port}" for n in names}
    if port == 80:
        values |= names
    return frozenset(v.lower() for v in values)


class _Guard:
    """Refuses writes (405) and foreign ``Host`` headers (400); adds the security headers."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
        refusal: Response | None = None
        if host not in self.hosts:
            refusal = PlainTextResponse("unknown Host header: this server answers only on "
                                        "its own address\n", status_code=400)
        elif scope["method"] not in ("GET", "HEAD"):
            refusal = PlainTextResponse("this server is read-only: GET and HEAD only\n",
                                        status_code=405, headers={"Allow": "GET, HEAD"})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
        else:
            await self.app(scope, receive, send_with_headers)


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value from the log is text, never markup
        undefined=jinja2.StrictUndefined,
    )
    env.filters["qs"] = urlencode
    env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
    return Jinja2Templates(env=env)


def create_app(store: EventLog, *, hosts: Iterable[str]) -> Starlette:
    """The application over ``store`` (left open; the caller closes it), answering only for ``hosts``
    (``Host`` header values such as ``127.0.0.1:8080``; see :func:`allowed_hosts`)."""
    templates = _templates()

    def now() -> datetime:
        return datetime.now(UTC)

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        return templates.TemplateResponse(request, name, context, status_code=status)

    def query(request: Request, *takes: str) -> Query:
        return Query(request.query_params.multi_items(), takes)

    def filters_of(request: Request) -> data.ListFilters:
        return data.ListFilters.parse(query(request, *data.ListFilters.NAMES), now=now())

    def list_page(request: Request) -> Response:
        f = filters_of(request)
        return page(request, "list.html", {"filters": f, "page": data.list_sagas(store, f),
                                           "statuses": ["running", "compensating", "completed",
                                                        "compensated", "failed"]})

    def list_rows(request: Request) -> Response:
        f = filters_of(request)
        return page(request, "rows.html", {"filters": f, "page": data.list_sagas(store, f)})

    def list_api(request: Request) -> Response:
        return JSONResponse(data.list_sagas(store, filters_of(request)).to_json())

    def window(request: Request, q: Query) -> dict[str, Any]:
        saga_id = params.saga_id(request.path_params["saga_id"], "saga id")
        return data.saga_page(store, saga_id, q.whole("page", low=1, high=_MAX_NUMBER) or 1)

    def saga_page(request: Request) -> Response:
        q = query(request, "page", "seq")
        timeline = window(request, q)
        seq = q.whole("seq", low=1, high=_MAX_NUMBER)
        return page(request, "saga.html", {
            "t": timeline, "chart": chart.layout(timeline, now=now()),
            "detail": None if seq is None else data.attempt_detail(store, timeline["id"], seq),
        })

    def saga_api(request: Request) -> Response:
        return JSONResponse(window(request, query(request, "page")))

    def attempt_args(request: Request) -> tuple[str, int]:
        q = query(request, "saga", "seq")
        saga_id, seq = q.saga_id("saga"), q.whole("seq", low=1, high=_MAX_NUMBER)
        if saga_id is None or seq is None:
            raise InvalidInput("saga= and seq= are needed: the saga's id and the event that starts "
                               "the attempt")
        return saga_id, seq

    def attempt_page(request: Request) -> Response:
        return page(request, "attempt.html", {"detail": data.attempt_detail(store, *attempt_args(request))})

    def attempt_api(request: Request) -> Response:
        return JSONResponse(data.attempt_detail(store, *attempt_args(request)))

    def stats_args(request: Request) -> dict[str, Any]:
        q = query(request, "name", "since")
        return {"name": q.text("name"), "since": q.time("since", now=now())}

    def stats_page(request: Request) -> Response:
        args = stats_args(request)
        figures = data.stats(store, **args)
        return page(request, "stats.html", {"s": figures, "rates": chart.rate_bars(figures["steps"]),
                                            "name": args["name"] or "",
                                            "since": request.query_params.get("since", "")})

    def stats_api(request: Request) -> Response:
        return JSONResponse(data.stats(store, **stats_args(request)))

    def error(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status)
        return page(request, "error.html", {"status": status, "message": message}, status)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(request, 404, shorten(str(exc), _LINE))

    async def bad_input(request: Request, exc: Exception) -> Response:
        return error(request, 400, shorten(str(exc), _LINE))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(request, exc.status_code, str(exc.detail))

    get = ["GET", "HEAD"]
    app = Starlette(
        routes=[
            Route("/", list_page, methods=get),
            Route("/rows", list_rows, methods=get),
            Route("/api/sagas", list_api, methods=get),
            Route("/sagas/{saga_id:path}", saga_page, methods=get),
            Route("/api/sagas/{saga_id:path}", saga_api, methods=get),
            Route("/attempt", attempt_page, methods=get),
            Route("/api/attempt", attempt_api, methods=get),
            Route("/stats", stats_page, methods=get),
            Route("/api/stats", stats_api, methods=get),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={SagaNotFound: not_found, InvalidInput: bad_input, HTTPException: http_error},
    )
    app.add_middleware(_Guard, hosts=hosts)
    return app

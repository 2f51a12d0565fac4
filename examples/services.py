"""Small JSON services on loopback for the examples: each is a real HTTP server in a thread.

A service remembers the answer it gave to each ``Idempotency-Key``, as a real
service that honours the header would, and keeps a log of what it answered.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Answer", "Request", "Service"]


@dataclass(frozen=True)
class Request:
    """What a handler is given."""

    method: str
    path: str
    key: str | None
    body: Any


@dataclass(frozen=True)
class Answer:
    """What a handler returns: a status, a JSON body, and how long to take over it."""

    status: int = 200
    body: Any = None
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Answer]


class Service:
    """An HTTP/1.1 server on 127.0.0.1 answering every request with ``handler``."""

    def __init__(self, name: str, handler: Handler) -> None:
        self.name = name
        self.handler = handler
        self.log: list[str] = []
        self._answers: dict[tuple[str, str, str], Answer] = {}
        self._lock = threading.Lock()
        service = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                request = Request(
                    self.command, self.path, self.headers.get("Idempotency-Key"),
                    json.loads(raw) if raw else None,
                )
                answer = service._answer(request)
                if answer.delay and _client_left(self.connection, answer.delay):
                    service._note(f"{request.method} {request.path} -> client went away")
                    self.close_connection = True
                    return
                data = b"" if answer.body is None else json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                for header, value in answer.headers:
                    self.send_header(header, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                service._note(f"{request.method} {request.path} -> {answer.status}")

            do_GET = do_POST = do_DELETE = _serve  # noqa: N815 (http.server's names)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        ).start()

    def _answer(self, request: Request) -> Answer:
        """The handler's answer; a request repeated with the same key gets the first success."""
        if request.key is None:
            return self.handler(request)
        ident = (request.method, request.path, request.key)
        with self._lock:
            known = self._answers.get(ident)
        if known is not None:
            return Answer(known.status, known.body)
        answer = self.handler(request)
        if answer.status < 300:
            with self._lock:
                self._answers[ident] = answer
        return answer

    def _note(self, line: str) -> None:
        with self._lock:
            self.log.append(line)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _client_left(conn: socket.socket, delay: float) -> bool:
    """Take ``delay`` seconds over an answer; ``True`` as soon as the client hangs up."""
    deadline = time.monotonic() + delay
    while (remaining := deadline - time.monotonic()) > 0:
        if select.select([conn], [], [], remaining)[0]:
            try:
                if conn.recv(1, socket.MSG_PEEK) == b"":
                    return True
            except OSError:
                return True
            time.sleep(0.005)
    return False

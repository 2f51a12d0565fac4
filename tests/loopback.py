"""Real HTTP services on 127.0.0.1 whose answers a test scripts, and which see clients go."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One scripted answer: sent after ``delay`` seconds unless the client goes first.

    With ``pieces`` above 1 the body is sent that many times over as HTTP chunks,
    ``pause`` seconds apart: a long streamed answer, or one that drips.
    """

    status: int = 200
    body: Any = None  # JSON-encoded unless bytes or str
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    pieces: int = 1
    pause: float = 0.0


@dataclass(frozen=True)
class Seen:
    """A request as the service received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Service:
    """A threaded HTTP/1.1 server on an ephemeral loopback port.

    Answers come from the script (:meth:`then`) in order, then ``default``.
    ``gone`` counts requests whose client closed the connection before the
    answer was sent (``left`` is set each time one does).
    """

    def __init__(self, name: str = "service", default: Reply | None = None) -> None:
        self.name = name
        self.default = default or Reply(200, {"ok": True})
        self.script: deque[Reply] = deque()
        self.requests: list[Seen] = []
        self.gone: list[Seen] = []
        self.left = threading.Event()
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
                with service._lock:
                    service.requests.append(seen)
                    reply = service.script.popleft() if service.script else service.default
                if reply.delay and service._client_left(self.connection, reply.delay):
                    with service._lock:
                        service.gone.append(seen)
                    service.left.set()
                    self.close_connection = True
                    return
                body = reply.body
                data = (
                    b"" if body is None else body if isinstance(body, bytes)
                    else body.encode() if isinstance(body, str) else json.dumps(body).encode()
                )
                self.send_response(reply.status)
                if body is not None and not isinstance(body, bytes | str):
                    self.send_header("Content-Type", "application/json")
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if reply.pieces > 1:
                    self._send_chunked(data, reply)
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _send_chunked(self, data: bytes, reply: Reply) -> None:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"%x\r\n%s\r\n" % (len(data), data)
                try:
                    for i in range(reply.pieces):
                        if i and reply.pause:
                            time.sleep(reply.pause)
                        self.wfile.write(chunk)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:  # the client went before the end
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, name=name, daemon=True
        )
        self.thread.start()

    @staticmethod
    def _client_left(conn: socket.socket, delay: float) -> bool:
        """Wait ``delay`` seconds; ``True`` as soon as the client closes the connection."""
        deadline = time.monotonic() + delay
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([conn], [], [], remaining)
            if readable:
                try:
                    if conn.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except OSError:
                    return True
                time.sleep(0.005)  # pipelined bytes: not a close
        return False

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def then(self, *replies: Reply) -> Service:
        """Answer the next requests with ``replies``, in order."""
        with self._lock:
            self.script.extend(replies)
        return self

    @property
    def hits(self) -> int:
        with self._lock:
            return len(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def services(*names: str) -> Iterator[list[Service]]:
    """Start one service per name; shut them all down afterwards."""
    started = [Service(n) for n in names]
    try:
        yield started
    finally:
        for s in started:
            s.close()

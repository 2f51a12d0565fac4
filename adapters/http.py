"""``Http``: one request per call with httpx, idempotent on the step's key, failures classified."""

from __future__ import annotations

import email.utils
import json
import os
import ssl
import string
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from saga import telemetry
from saga.definition import StepContext

from .base import Adapter, recorded
from .errors import (
    CallTimedOut,
    ConnectionFailed,
    HttpBodyTooLarge,
    HttpError,
    HttpRejected,
    InvalidAdapter,
    InvalidRequest,
    MissingDependency,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_MAX_BODY", "Http", "redact_url"]

DEFAULT_MAX_BODY = 10 * 1024 * 1024
"""Bytes of a 2xx body an :class:`Http` adapter reads unless built with another ``max_body``."""

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_RETRYABLE_STATUS = frozenset({408, 429})
_BODY_START = 200  # characters of an error answer's body its message shows
_ERROR_BODY = 4096  # bytes of an error answer read for them
_MAX_REDIRECTS = 10
_DEFAULT_PORTS = {"http": 80, "https": 443}
_DEFAULT_TIMEOUT = 10.0
_INSTALL = "Http needs httpx: pip install 'saga-coordinator[http]'"


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise MissingDependency(_INSTALL) from None
    return httpx


def redact_url(url: str) -> str:
    """``url`` with any password removed (the user name stays)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class Http(Adapter):
    """Sends one HTTP request per call: ``http(ctx, json=..., params=..., headers=..., path=...)``.

    Every request carries ``Idempotency-Key: <ctx.idempotency_key>``, the same
    on every attempt of the step, so the service can apply it once. ``url``
    may hold ``{name}`` placeholders, filled (URL-quoted) from ``path``, e.g.
    ``Http("DELETE", "http://hotel/bookings/{id}")(ctx, path={"id": ref})``.

    The answer is the decoded JSON body, the text if the body is not JSON, or
    ``None`` for an empty body (204). Connection errors, timeouts, 408, 429
    and 5xx raise retryable errors (:class:`~saga.adapters.ConnectionFailed`,
    :class:`~saga.adapters.CallTimedOut`, :class:`~saga.adapters.HttpError`);
    a ``Retry-After`` header (seconds or an HTTP date) becomes the error's
    ``retry_after``, and one that names no usable time is ignored. Any other
    4xx, or a redirect that is not followed, raises
    :class:`~saga.adapters.HttpRejected` (a :class:`~saga.PermanentError`)
    with the status and the start of the body.

    Redirects are followed only within the URL's origin (scheme, host and
    port), at most 10 in a row; each hop is a call of its own in the call
    log. A redirect to another origin is refused rather than followed, so the
    request's body and headers (an API key, the idempotency key) never reach
    a service they were not meant for: to call it, name its URL.

    A 2xx body is read as it arrives, up to ``max_body`` bytes (default 10
    MiB); a longer one raises :class:`~saga.adapters.HttpBodyTooLarge` (final,
    its effect in doubt) without reading the rest. Of any other answer only
    the start is read, for the message. ``timeout`` (seconds, default 10)
    bounds connecting and each read and write.

    Needs httpx (``pip install 'saga-coordinator[http]'``).
    """

    kind: ClassVar[str] = "http"

    def __init__(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self._httpx = _httpx()
        if not isinstance(method, str) or method.upper() not in _METHODS:
            raise InvalidAdapter(f"Http: method must be one of {', '.join(sorted(_METHODS))}, not {method!r}")
        if not isinstance(url, str):
            raise InvalidAdapter(f"Http: url must be a string, not {url!r}")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidAdapter(f"Http: url must be an http:// or https:// URL with a host, not {url!r}")
        try:
            self._fields = {f for _, f, _, _ in string.Formatter().parse(url) if f is not None}
        except ValueError as e:
            raise InvalidAdapter(f"Http: bad placeholder in url {url!r}: {e}") from None
        if any(not f.isidentifier() for f in self._fields):
            raise InvalidAdapter(f"Http: url placeholders must be plain names like {{id}}, in {url!r}")
        if headers is not None and not (
            isinstance(headers, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise InvalidAdapter(f"Http: headers must map strings to strings, not {headers!r}")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise InvalidAdapter(f"Http: timeout must be a positive number of seconds, not {timeout!r}")
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
            raise InvalidAdapter(f"Http: max_body must be a whole number of bytes >= 1, not {max_body!r}")
        self.method = method.upper()
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = float(timeout) if timeout is not None else _DEFAULT_TIMEOUT
        self.max_body = max_body
        """The most bytes of a 2xx body a call reads (see :class:`~saga.adapters.HttpBodyTooLarge`)."""
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._client_pid = 0
        self._ssl: ssl.SSLContext | None = None

    @property
    def target(self) -> str:
        return redact_url(self.url)

    # -- calling ----------------------------------------------------------------------------

    def __call__(
        self,
        ctx: StepContext,
        /,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        path: Mapping[str, Any] | None = None,
    ) -> Any:
        url = self._url(path)
        client = self._sync_client()
        request = client.build_request(
            self.method, url, json=json, params=params, headers=self._headers(ctx, headers)
        )
        hop, shown = 0, url
        while True:
            with self._hop(ctx, request, shown) as span:
                response = client.send(request, stream=True)
                try:
                    span.status(response.status_code)
                    after = self._redirect(request, response, shown, hop)
                    if after is None:
                        return self._answer(ctx, request, shown, response, self._read(response))
                finally:
                    response.close()
            request, shown, hop = after, str(after.url), hop + 1

    async def acall(
        self,
        ctx: StepContext,
        /,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        path: Mapping[str, Any] | None = None,
    ) -> Any:
        url = self._url(path)
        # A client per call: an async client belongs to one event loop, and closing it
        # when a hedge cancels this call closes the connection, so the server sees
        # the client go.
        async with self._httpx.AsyncClient(timeout=self.timeout, verify=self._ssl_context()) as client:
            request = client.build_request(
                self.method, url, json=json, params=params, headers=self._headers(ctx, headers)
            )
            hop, shown = 0, url
            while True:
                with self._hop(ctx, request, shown) as span:
                    response = await client.send(request, stream=True)
                    try:
                        span.status(response.status_code)
                        after = self._redirect(request, response, shown, hop)
                        if after is None:
                            return self._answer(ctx, request, shown, response, await self._aread(response))
                    finally:
                        await response.aclose()
                request, shown, hop = after, str(after.url), hop + 1

    # -- pieces -----------------------------------------------------------------------------

    def _url(self, path: Mapping[str, Any] | None) -> str:
        if not self._fields:
            if path:
                raise InvalidRequest(f"Http: path given but {self.url!r} has no placeholders")
            return self.url
        values = dict(path or {})
        missing = self._fields - values.keys()
        if missing:
            raise InvalidRequest(f"Http: path needs {', '.join(sorted(missing))} for {self.url!r}")
        return self.url.format(**{k: urllib.parse.quote(str(values[k]), safe="") for k in self._fields})

    def _headers(self, ctx: StepContext, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {**self.headers, **(extra or {})}
        for name in [k for k in headers if k.lower() == "idempotency-key"]:
            del headers[name]
        headers["Idempotency-Key"] = ctx.idempotency_key
        return headers

    @contextmanager
    def _hop(self, ctx: StepContext, request: httpx.Request, shown: str) -> Iterator[Any]:
        """One request of a call: recorded in ``ctx.calls``, in a span of its own, with
        httpx's errors translated."""
        with recorded(ctx, self.kind, redact_url(shown)), \
                telemetry.http_call(ctx, request.method, shown) as span:
            request.headers.update(span.inject({}))
            try:
                yield span
            except self._httpx.HTTPError as e:
                raise self._transport_error(request.method, shown, e) from e

    def _redirect(
        self, request: httpx.Request, response: httpx.Response, shown: str, hop: int
    ) -> httpx.Request | None:
        """The request a redirect asks for next (``None`` for an answer); raises
        :class:`HttpRejected` for one that is not followed."""
        after = response.next_request
        if after is None:
            return None
        status = response.status_code
        what = f"{request.method} {redact_url(shown)} answered {status}"
        if hop >= _MAX_REDIRECTS:
            raise HttpRejected(f"{what}: more than {_MAX_REDIRECTS} redirects in a row", status=status)
        if _origin(after.url) != _origin(request.url):
            raise HttpRejected(
                f"{what}, a redirect to {redact_url(str(after.url))}: not followed, as it is on "
                f"another origin than {_origin_text(request.url)} (the request's body and headers "
                f"are meant for that one only)",
                status=status,
            )
        return after

    def _limit(self, response: httpx.Response) -> int:
        """How much of ``response``'s body to read: a 2xx one up to the bound, of any other
        only the start its error message shows."""
        return self.max_body if 200 <= response.status_code < 300 else _ERROR_BODY

    def _read(self, response: httpx.Response) -> _Body:
        body = _Body(self._limit(response))
        for chunk in response.iter_bytes():
            if not body.add(chunk):
                break
        return body

    async def _aread(self, response: httpx.Response) -> _Body:
        body = _Body(self._limit(response))
        async for chunk in response.aiter_bytes():
            if not body.add(chunk):
                break
        return body

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                # A forked child must not share the parent's pooled connections.
                self._client = self._httpx.Client(timeout=self.timeout, verify=self._ssl_context())
                self._client_pid = os.getpid()
            return self._client

    def _ssl_context(self) -> ssl.SSLContext:
        # Built once: loading the CA bundle costs more than a request on a nearby service.
        if self._ssl is None:
            import certifi

            self._ssl = ssl.create_default_context(cafile=certifi.where())
        return self._ssl

    def _transport_error(self, method: str, shown: str, error: Exception) -> Exception:
        what = f"{method} {redact_url(shown)}"
        if isinstance(error, self._httpx.TimeoutException):
            return CallTimedOut(f"{what}: no answer within {self.timeout:g}s ({type(error).__name__})")
        if isinstance(error, self._httpx.TransportError):
            return ConnectionFailed(f"{what}: {type(error).__name__}: {error}".rstrip(": "))
        return ConnectionFailed(f"{what}: {type(error).__name__}: {error}")

    def _answer(
        self, ctx: StepContext, request: httpx.Request, shown: str, response: httpx.Response, body: _Body
    ) -> Any:
        status = response.status_code
        what = f"{request.method} {redact_url(shown)} answered {status}"
        if 200 <= status < 300:
            if body.size > self.max_body:
                raise HttpBodyTooLarge(
                    f"{what} with a body over {self.max_body} bytes, more than this adapter reads "
                    f"(its max_body)",
                    status=status, limit=self.max_body,
                )
            return _decode(response, body.content())
        start = _text(response, body.content())[:_BODY_START]
        if start:
            what += f": {start!r}"
        if status in _RETRYABLE_STATUS or status >= 500:
            after = _retry_after(response.headers.get("retry-after"), ctx.clock.now())
            raise HttpError(what, status=status, retry_after=after)
        raise HttpRejected(what, status=status)

    def close(self) -> None:
        """Close the pooled connections of plain calls (a later call opens new ones)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class _Body:
    """The bytes of an answer read so far, and how many there were (the read stops past
    ``limit``)."""

    __slots__ = ("limit", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; ``False`` once past the limit (read no further)."""
        self.parts.append(chunk)
        self.size += len(chunk)
        return self.size <= self.limit

    def content(self) -> bytes:
        return b"".join(self.parts)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port (the scheme's default when the URL names none)."""
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _origin_text(url: httpx.URL) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


def _text(response: httpx.Response, content: bytes) -> str:
    return content.decode(response.encoding or "utf-8", errors="replace")


def _decode(response: httpx.Response, content: bytes) -> Any:
    if response.status_code == 204 or not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return _text(response, content)


def _retry_after(value: str | None, now: datetime) -> datetime | None:
    """The time a ``Retry-After`` header names: ``now`` plus seconds, or an HTTP date;
    ``None`` when it names no time that can be represented."""
    if value is None:
        return None
    value = value.strip()
    try:
        if value.isascii() and value.isdigit():
            return now + timedelta(seconds=int(value))
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)

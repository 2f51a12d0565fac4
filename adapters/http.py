"""``Http``: one request per call with httpx, idempotent on the step's key, failures classified."""

from __future__ import annotations

import email.utils
import json
import os
import ssl
import string
import threading
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from saga import telemetry
from saga.definition import StepContext

from .base import Adapter, recorded
from .errors import (
    CallTimedOut,
    ConnectionFailed,
    HttpError,
    HttpRejected,
    InvalidAdapter,
    InvalidRequest,
    MissingDependency,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["Http", "redact_url"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_RETRYABLE_STATUS = frozenset({408, 429})
_BODY_START = 200
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
    ``retry_after``. Any other 4xx, or a redirect that cannot be followed,
    raises :class:`~saga.adapters.HttpRejected` (a :class:`~saga.PermanentError`)
    with the status and the start of the body. ``timeout`` (seconds, default
    10) bounds connecting and each read and write.

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
        self.method = method.upper()
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = float(timeout) if timeout is not None else _DEFAULT_TIMEOUT
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
        with recorded(ctx, self.kind, redact_url(url)), telemetry.http_call(ctx, self.method, url) as span:
            try:
                response = self._sync_client().request(
                    self.method, url, json=json, params=params,
                    headers=span.inject(self._headers(ctx, headers)),
                )
            except self._httpx.HTTPError as e:
                raise self._transport_error(url, e) from e
            span.status(response.status_code)
            return self._answer(ctx, url, response)

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
        with recorded(ctx, self.kind, redact_url(url)), telemetry.http_call(ctx, self.method, url) as span:
            # A client per call: an async client belongs to one event loop, and closing it
            # when a hedge cancels this call closes the connection, so the server sees
            # the client go.
            async with self._httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=True, verify=self._ssl_context()
            ) as client:
                try:
                    response = await client.request(
                        self.method, url, json=json, params=params,
                        headers=span.inject(self._headers(ctx, headers)),
                    )
                except self._httpx.HTTPError as e:
                    raise self._transport_error(url, e) from e
            span.status(response.status_code)
            return self._answer(ctx, url, response)

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

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                # A forked child must not share the parent's pooled connections.
                self._client = self._httpx.Client(
                    timeout=self.timeout, follow_redirects=True, verify=self._ssl_context()
                )
                self._client_pid = os.getpid()
            return self._client

    def _ssl_context(self) -> ssl.SSLContext:
        # Built once: loading the CA bundle costs more than a request on a nearby service.
        if self._ssl is None:
            import certifi

            self._ssl = ssl.create_default_context(cafile=certifi.where())
        return self._ssl

    def _transport_error(self, url: str, error: Exception) -> Exception:
        what = f"{self.method} {redact_url(url)}"
        if isinstance(error, self._httpx.TimeoutException):
            return CallTimedOut(f"{what}: no answer within {self.timeout:g}s ({type(error).__name__})")
        if isinstance(error, self._httpx.TransportError):
            return ConnectionFailed(f"{what}: {type(error).__name__}: {error}".rstrip(": "))
        return ConnectionFailed(f"{what}: {type(error).__name__}: {error}")

    def _answer(self, ctx: StepContext, url: str, response: httpx.Response) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            return _decode(response)
        what = f"{self.method} {redact_url(url)} answered {status}"
        body = response.text[:_BODY_START]
        if body:
            what += f": {body!r}"
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


def _decode(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        return response.text


def _retry_after(value: str | None, now: datetime) -> datetime | None:
    """The time a ``Retry-After`` header names: ``now`` plus seconds, or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)

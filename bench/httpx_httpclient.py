"""The gateway's upstream client over httpx, kept only for the benchmark.

``bench/gateway_overhead.py`` runs the gateway with this client, with the
aiohttp one and with the hand-written one it ships (``gateway/httpclient.py``),
side by side. Same surface as ``gateway/httpclient.py``.

Original description: pooled upstream HTTP client for the gateway, a thin layer over httpx.

The gateway POSTs JSON to upstreams and relays the answer (JSON or SSE). httpx
(with httpcore's pool) does the HTTP: keep-alive per origin, every request built
from its own URL and headers, TLS verified, timeouts per phase. This module only
adds the small surface the relay needs (``Response`` with ``status``, ``header``,
async iteration, ``aread``, ``abort``) and maps httpx's exceptions onto our own
tree, so failover reasons and metric labels keep their meaning::

    UpstreamError
     ├── ConnectError / ConnectTimeout   (no connection could be opened)
     ├── ReadTimeout / PoolTimeout       (silence, or no free connection)
     ├── RemoteProtocolError             (broken or unparseable answer)
     └── LocalProtocolError              (the request cannot be sent as given)
    ResponseAborted                      (our own caller left; not an upstream fault)

Messages never carry URLs, headers or bodies: only the class name is ever logged.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator, Sequence

import httpx


class UpstreamError(Exception):
    """A transport-level failure talking to an upstream (connect, timeout, protocol)."""


class ConnectError(UpstreamError):
    """No connection could be opened."""


class ConnectTimeout(UpstreamError):
    """Opening a connection took longer than the connect timeout."""


class ReadTimeout(UpstreamError):
    """The upstream went silent for longer than the read timeout."""


class PoolTimeout(UpstreamError):
    """Every connection to the upstream stayed busy for the whole connect timeout."""


class RemoteProtocolError(UpstreamError):
    """The upstream broke the connection or sent something unparseable."""


class LocalProtocolError(UpstreamError):
    """The request could not be sent as given (e.g. a header value with a line break)."""


class ResponseAborted(Exception):
    """Raised to a reader whose response was aborted by its own side (not an upstream fault)."""


_ERRORS: tuple[tuple[type[httpx.HTTPError], type[UpstreamError], str], ...] = (
    (httpx.ConnectTimeout, ConnectTimeout, "connect timed out"),
    (httpx.PoolTimeout, PoolTimeout, "no free connection"),
    (httpx.TimeoutException, ReadTimeout, "read timed out"),
    (httpx.ConnectError, ConnectError, "connect failed"),
    (httpx.LocalProtocolError, LocalProtocolError, "request could not be sent"),
    (httpx.UnsupportedProtocol, LocalProtocolError, "unsupported URL"),
    (httpx.DecodingError, RemoteProtocolError, "undecodable response body"),
)


def _mapped(exc: httpx.HTTPError) -> UpstreamError:
    """Our error for an httpx one; the text is fixed (httpx's could quote the URL)."""
    for source, target, message in _ERRORS:
        if isinstance(exc, source):
            return target(message)
    return RemoteProtocolError("connection broken")


def _check_headers(headers: Sequence[tuple[str, str]]) -> None:
    for name, value in headers:
        if any(c in value or c in name for c in ("\r", "\n", "\0")):
            raise LocalProtocolError("header value contains a line break")


class Response:
    """Status and headers of an upstream answer; the body is read or iterated after."""

    __slots__ = ("_aborted", "_chunks", "_inner", "_reader", "headers", "status")

    def __init__(self, inner: httpx.Response) -> None:
        self._inner = inner
        self.status = inner.status_code
        self.headers: list[tuple[bytes, bytes]] = [
            (k.lower(), v) for k, v in inner.headers.raw
        ]  # names lower-cased
        self._chunks: AsyncIterator[bytes] = inner.aiter_raw()
        self._reader: asyncio.Task[object] | None = None
        self._aborted = False

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case bytes), if present."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        """The next body bytes as they arrived (undecoded)."""
        if self._aborted:
            raise ResponseAborted
        task = self._reader = asyncio.current_task()
        try:
            return await self._chunks.__anext__()
        except asyncio.CancelledError:
            if self._aborted and task is not None and task.uncancel() == 0:
                raise ResponseAborted from None  # our abort(), not a real cancellation
            raise
        except httpx.HTTPError as exc:
            raise _mapped(exc) from None
        finally:
            self._reader = None

    async def aread(self) -> bytes:
        """The whole body (decoded if the upstream gzip/deflate-encoded it anyway)."""
        try:
            return await self._inner.aread()
        except httpx.HTTPError as exc:
            raise _mapped(exc) from None
        finally:
            await self._inner.aclose()

    async def aclose(self) -> None:
        """Release the connection (kept alive if the body was read to the end)."""
        await self._inner.aclose()

    def abort(self) -> None:
        """Stop a read in progress (the caller left): the reader gets ``ResponseAborted``."""
        self._aborted = True
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()


def default_ssl_context() -> ssl.SSLContext:
    """Verifying TLS context: ``SSL_CERT_FILE`` if the operator set one, else certifi's CAs."""
    cafile = os.environ.get("SSL_CERT_FILE")
    if not cafile:
        import certifi

        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile)


class HttpClient:
    """Pooled keep-alive POSTs over httpx; one instance per gateway process."""

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_connections: int = 256,
        keepalive_expiry: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._ssl = ssl_context
        max_connections = max(1, max_connections)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=connect_timeout,
                read=read_timeout,
                write=read_timeout,
                pool=connect_timeout,
            ),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=keepalive_expiry,
            ),
            verify=self.ssl_context(),
            trust_env=False,  # no proxy or .netrc from the environment: keys go upstream only
            follow_redirects=False,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The verifying TLS context used for https upstreams."""
        if self._ssl is None:
            self._ssl = default_ssl_context()
        return self._ssl

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Sequence[tuple[str, str]],
        *,
        connect_ip: str | None = None,
    ) -> Response:
        """POST ``body`` to ``url``; returns once the status and headers are in."""
        if connect_ip is not None:  # BYOK pinning (SSRF guard) is not ported: refuse, not skip
            raise LocalProtocolError("pinned connections are not supported by this client")
        _check_headers(headers)
        try:
            request = self._client.build_request("POST", url, content=body, headers=list(headers))
            inner = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _mapped(exc) from None
        except httpx.InvalidURL:
            raise LocalProtocolError("unsupported URL") from None
        return Response(inner)

    def idle_connections(self, url: str) -> int:
        """How many kept-alive connections to ``url``'s origin wait for reuse (for tests)."""
        pool = self._client._transport._pool  # type: ignore[attr-defined]
        origin = httpx.URL(url)
        count = 0
        for conn in pool.connections:
            info = conn._origin  # httpcore.Origin
            port = origin.port or (443 if origin.scheme == "https" else 80)
            same = (info.host.decode(), info.port) == (origin.host, port)
            if same and conn.is_idle():
                count += 1
        return count

    async def aclose(self) -> None:
        """Close every connection."""
        await self._client.aclose()

"""The gateway's upstream client over aiohttp, kept for the benchmark.

Same surface as ``gateway/httpclient.py``; ``bench/gateway_overhead.py`` runs
the gateway with it side by side with the hand-written client (see there why
the gateway ships the hand-written one). Swapping it in is one module.

Original description: pooled upstream HTTP client, a thin layer over aiohttp.

The gateway POSTs JSON to upstreams and relays the answer (JSON or SSE).
aiohttp (C-accelerated parser, keep-alive pool per origin) does the HTTP: every
request is built from its own URL and headers, TLS is verified, the connect
and between-reads timeouts are enforced. This module only adds the small
surface the relay needs (``Response`` with ``status``, ``header``, async
iteration, ``aread``, ``abort``) and maps aiohttp's exceptions onto our own
tree, so failover reasons and metric labels keep their meaning::

    UpstreamError
     ├── ConnectError / ConnectTimeout   (no connection could be opened in time)
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
from collections.abc import Sequence

import aiohttp
from multidict import CIMultiDict


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


_ERRORS: tuple[tuple[type[BaseException], type[UpstreamError], str], ...] = (
    (aiohttp.ConnectionTimeoutError, ConnectTimeout, "connect timed out"),
    (aiohttp.ServerTimeoutError, ReadTimeout, "read timed out"),
    (TimeoutError, ReadTimeout, "read timed out"),
    (aiohttp.ClientConnectorError, ConnectError, "connect failed"),
    (aiohttp.ClientSSLError, ConnectError, "connect failed"),
    (aiohttp.InvalidURL, LocalProtocolError, "unsupported URL"),
)
_CAUGHT = (aiohttp.ClientError, TimeoutError)


def _mapped(exc: BaseException) -> UpstreamError:
    """Our error for an aiohttp one; the text is fixed (aiohttp's can quote the URL)."""
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

    __slots__ = ("_aborted", "_inner", "_reader", "headers", "status")

    def __init__(self, inner: aiohttp.ClientResponse) -> None:
        self._inner = inner
        self.status = inner.status
        self.headers: list[tuple[bytes, bytes]] = [
            (k.lower(), v) for k, v in inner.raw_headers
        ]  # names lower-cased
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
        """The next body bytes as they arrived."""
        if self._aborted:
            raise ResponseAborted
        task = self._reader = asyncio.current_task()
        try:
            data = await self._inner.content.readany()
        except asyncio.CancelledError:
            if self._aborted and task is not None and task.uncancel() == 0:
                raise ResponseAborted from None  # our abort(), not a real cancellation
            raise
        except _CAUGHT as exc:
            raise _mapped(exc) from None
        finally:
            self._reader = None
        if not data:
            self._inner.release()
            raise StopAsyncIteration
        return data

    async def aread(self) -> bytes:
        """The whole body (decoded if the upstream gzip/deflate-encoded it anyway)."""
        try:
            return await self._inner.read()
        except _CAUGHT as exc:
            raise _mapped(exc) from None
        finally:
            self._inner.release()

    async def aclose(self) -> None:
        """Give the connection back (kept alive if the body was read to the end) or close it."""
        if self._inner.content.at_eof():
            self._inner.release()
        else:
            self._inner.close()  # an unread body: the connection cannot be reused

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
    """Pooled keep-alive POSTs over aiohttp; one instance per gateway process."""

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
        self._limit = max(1, max_connections)
        self._keepalive = keepalive_expiry
        # connect covers waiting for a pooled connection and opening one.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        self._session: aiohttp.ClientSession | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """The verifying TLS context used for https upstreams."""
        if self._ssl is None:
            self._ssl = default_ssl_context()
        return self._ssl

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # built on first use: aiohttp wants a running loop
            connector = aiohttp.TCPConnector(
                limit=0,
                limit_per_host=self._limit,
                keepalive_timeout=self._keepalive,
                ssl=self.ssl_context(),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                trust_env=False,  # no proxy or .netrc from the environment: keys go upstream only
                skip_auto_headers=("User-Agent",),
            )
        return self._session

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
            inner = await self._client().post(
                url, data=body, headers=CIMultiDict(headers), allow_redirects=False
            )
        except _CAUGHT as exc:
            raise _mapped(exc) from None
        except ValueError:  # a URL or header aiohttp refuses to send
            raise LocalProtocolError("request could not be sent") from None
        return Response(inner)

    def idle_connections(self, url: str) -> int:
        """How many kept-alive connections to ``url``'s origin wait for reuse (for tests)."""
        if self._session is None:
            return 0
        target = aiohttp.client.URL(url)
        conns = self._session.connector._conns  # type: ignore[union-attr]
        return sum(
            len(idle)
            for key, idle in conns.items()
            if (key.host, key.port) == (target.host, target.port)
        )

    async def aclose(self) -> None:
        """Close every connection."""
        if self._session is not None:
            await self._session.close()
            self._session = None

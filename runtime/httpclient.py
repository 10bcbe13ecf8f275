"""A minimal asyncio HTTP/1.1 client (one request per connection) for JSON APIs.

Built on asyncio streams rather than urllib so that long polls and model calls can
be cancelled cleanly at shutdown instead of pinning a thread.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_BODY = 16 * 1024 * 1024
_SSL_CONTEXT: ssl.SSLContext | None = None


class HttpError(Exception):
    """A transport failure: connection refused, reset, timeout or a malformed response."""


class EmptyResponse(ValueError):
    """The peer (or a proxy on the way) closed the connection without answering."""


@dataclass(frozen=True)
class Response:
    """A complete HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """Decode the body as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def _ssl_context() -> ssl.SSLContext:
    global _SSL_CONTEXT  # created lazily: loading the CA bundle costs ~20 ms at start
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = ssl.create_default_context()
    return _SSL_CONTEXT


async def request_json(
    method: str,
    url: str,
    payload: Any = None,
    *,
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> Response:
    """Send one request with an optional JSON body; raise HttpError on transport failure."""
    try:
        return await asyncio.wait_for(_request(method, url, payload, headers or {}), timeout_s)
    except TimeoutError:
        raise HttpError("timeout") from None
    except EmptyResponse:
        raise HttpError("connection closed before a response") from None
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        raise HttpError(exc.__class__.__name__) from None


async def _request(method: str, url: str, payload: Any, headers: dict[str, str]) -> Response:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    body = b"" if payload is None else json.dumps(payload).encode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines.append(f"Content-Length: {len(body)}")
    if payload is not None:
        lines.append("Content-Type: application/json")
    lines += [f"{key}: {value}" for key, value in headers.items()]
    proxy = _proxy_for(parts.scheme, host)
    if proxy is None:
        reader, writer = await asyncio.open_connection(
            host,
            port,
            ssl=_ssl_context() if secure else None,
            server_hostname=host if secure else None,
        )
    else:
        reader, writer = await _via_proxy(proxy, host, port, secure)
        if not secure:  # a plain-HTTP proxy request names the whole URL
            lines[0] = f"{method} {parts.scheme}://{parts.netloc}{target} HTTP/1.1"
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return await _read_response(reader)
    finally:
        writer.close()


def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    """The (host, port) of the HTTP proxy from HTTP(S)_PROXY / NO_PROXY, or None."""
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme)
    if not url or urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return (parts.hostname or "localhost", parts.port or 3128)


async def _via_proxy(
    proxy: tuple[str, int], host: str, port: int, secure: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection through a proxy: a CONNECT tunnel upgraded to TLS for https."""
    reader, writer = await asyncio.open_connection(*proxy)
    if not secure:
        return reader, writer
    writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    await writer.drain()
    status = (await reader.readuntil(b"\r\n\r\n")).split(b" ", 2)
    if len(status) < 2 or status[1] != b"200":
        writer.close()
        raise ValueError("proxy refused the tunnel")
    await writer.start_tls(_ssl_context(), server_hostname=host)
    return reader, writer


async def _read_response(reader: asyncio.StreamReader) -> Response:
    status_line = await reader.readline()
    if not status_line:
        raise EmptyResponse
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError("malformed status line")
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read(MAX_BODY)
    return Response(int(parts[1]), headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return b"".join(chunks)
        total += size
        if total > MAX_BODY:
            raise ValueError("response too large")
        chunks.append(await reader.readexactly(size))
        await reader.readline()

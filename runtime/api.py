"""The runtime API: a tiny asyncio HTTP/1.0-style JSON server (one request per connection)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("runtime.api")

MAX_BODY = 64 * 1024
READ_TIMEOUT = 10.0
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ApiError(Exception):
    """An expected error answered as {ok:false, error} with a status code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Handler = Callable[[dict[str, Any], dict[str, list[str]]], Awaitable[dict[str, Any]]]


class ApiServer:
    """Routes (method, path) to async handlers; everything under /api needs the bearer token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._routes: dict[tuple[str, str], Handler] = {}
        self._server: asyncio.Server | None = None

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Register a handler taking (json body, query) and returning a JSON object."""
        self._routes[(method, path)] = handler

    async def start(self, host: str, port: int) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)

    async def stop(self) -> None:
        """Stop accepting connections."""
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await self._dispatch(reader)
        except Exception:  # never let one request take the server down
            log.exception("api handler crashed")
            status, payload = 500, {"ok": False, "error": "internal error"}
        body = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            writer.write(head.encode() + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _dispatch(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
        try:
            request = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT)
            method, target, headers, body = request
        except ApiError as exc:
            return exc.status, {"ok": False, "error": str(exc)}
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError):
            return 400, {"ok": False, "error": "malformed request"}
        url = urlsplit(target)
        handler = self._routes.get((method, url.path))
        if handler is None:
            known = any(path == url.path for _, path in self._routes)
            return (
                (405, {"ok": False, "error": "method not allowed"})
                if known
                else (404, {"ok": False, "error": "not found"})
            )
        if url.path.startswith("/api/") and not self._authorized(headers):
            return 401, {"ok": False, "error": "missing or invalid bearer token"}
        try:
            data = json.loads(body) if body else {}
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            return 400, {"ok": False, "error": "body must be a JSON object"}
        try:
            return 200, await handler(data, parse_qs(url.query))
        except ApiError as exc:
            return exc.status, {"ok": False, "error": str(exc)}

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        # compare_digest keeps the comparison time independent of where they differ.
        presented = value.strip().encode()
        return (
            scheme.lower() == "bearer"
            and presented.isascii()
            and hmac.compare_digest(presented, self._token)
        )


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    request_line = (await reader.readline()).decode("latin-1").split()
    if len(request_line) != 3:
        raise ValueError("bad request line")
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        if len(headers) > 100:
            raise ValueError("too many headers")
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length > MAX_BODY:
        raise ApiError(413, "body too large")
    body = await reader.readexactly(length) if length else b""
    return request_line[0].upper(), request_line[1], headers, body

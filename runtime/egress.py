"""The tenant egress proxy: `python3 -m runtime.egress`. Stdlib only.

Runs next to a runtime (see core/runtimes/fence.py) as its only way out. It
accepts exactly one request per connection and forwards it only when it matches
the allowlist EGRESS_ALLOW (space-separated URLs):

- ``CONNECT host:port`` (HTTPS): allowed when an https URL of the list has that
  host and port; bytes are then relayed both ways (TLS stays end to end).
- ``METHOD http://host:port/path`` (plain HTTP, absolute form): allowed when an
  http URL of the list has that host and port and the path starts with its path,
  so a gateway at http://gw:8100/v1 does not expose http://gw:8100/metrics.

Anything else gets 403 (or 400 for a malformed request) and is logged without
its query string.

Under the Swarm driver the runtime sits on an internal overlay network the control
plane cannot reach, so the proxy is also the way in: with EGRESS_RELAY_PORT and
EGRESS_RELAY_TO (host:port, the runtime's API) set, connections to that port are
relayed byte for byte to the runtime API, which authenticates every call itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from urllib.parse import urlsplit

HEAD_LIMIT = 64 * 1024
CONNECT_TIMEOUT = 10.0
IDLE_TIMEOUT = 300.0
Rule = tuple[str, str, int, str]  # scheme, host, port, path prefix


def parse_allowlist(raw: str) -> list[Rule]:
    """(scheme, host, port, path prefix) for each allowed URL."""
    rules = []
    for url in raw.split():
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            continue
        port = parts.port or (443 if parts.scheme == "https" else 80)
        rules.append((parts.scheme, parts.hostname.lower(), port, parts.path.rstrip("/")))
    return rules


def allowed(rules: list[Rule], scheme: str, host: str, port: int, path: str) -> bool:
    """Whether a request for scheme://host:port/path is on the allowlist."""
    host = host.lower()
    for r_scheme, r_host, r_port, prefix in rules:
        if (r_scheme, r_host, r_port) != (scheme, host, port):
            continue
        if scheme == "https" or not prefix or path == prefix or path.startswith(prefix + "/"):
            return True
    return False


def _log(event: str, **fields: object) -> None:
    record = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "msg": event, **fields}
    print(json.dumps(record), flush=True)


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT):
            writer.write(chunk)
            await writer.drain()
    except (OSError, TimeoutError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _refuse(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = f"egress: {reason}\n".encode()
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(OSError):
        await writer.drain()


class Proxy:
    """One allowlisting proxy server."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection: one CONNECT tunnel or one forwarded request."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            if len(head) > HEAD_LIMIT:
                raise ValueError("head too large")
            await self._dispatch(head, reader, writer)
        except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await _refuse(writer, 400, "Bad Request")
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _dispatch(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        request_line, _, rest = head.decode("latin-1").partition("\r\n")
        method, target, version = request_line.split(" ")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            scheme, path, upstream_head, length = "https", "", b"", 0
        else:
            parts = urlsplit(target)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError("absolute http URL required")
            scheme, host, port = "http", parts.hostname, str(parts.port or 80)
            path = parts.path or "/"
            origin = path + (f"?{parts.query}" if parts.query else "")
            headers = [h for h in rest.split("\r\n") if h and not _hop_header(h)]
            length = _content_length(headers)
            upstream_head = "\r\n".join(
                [f"{method} {origin} {version}", *headers, "Connection: close", "", ""]
            ).encode("latin-1")
        host = host.strip("[]")
        if not port.isdigit() or not allowed(self.rules, scheme, host, int(port), path):
            _log("egress refused", method=method, host=host, port=port, path=path)
            await _refuse(writer, 403, "Forbidden")
            return
        up_reader, up_writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port)), CONNECT_TIMEOUT
        )
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await writer.drain()
                await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))
                return
            # Exactly one request body, then no more: a pipelined second request could
            # otherwise reach a path outside the allowed prefix on the same connection.
            # No half-close after it, though: uvicorn (the gateway) drops a connection whose
            # client sent EOF, answer unsent, so the runtime saw an empty reply while the
            # gateway logged the call as ok. "Connection: close" ends the exchange instead.
            up_writer.write(upstream_head + await reader.readexactly(length))
            await up_writer.drain()
            await _relay(up_reader, writer)
        finally:
            up_writer.close()


def _content_length(headers: list[str]) -> int:
    length = 0
    for line in headers:
        name, _, value = line.partition(":")
        if name.strip().lower() == "transfer-encoding":
            raise ValueError("chunked request bodies are not supported")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if not 0 <= length <= 16 * 1024 * 1024:
        raise ValueError("bad content-length")
    return length


def _hop_header(line: str) -> bool:
    name = line.partition(":")[0].strip().lower()
    return name in ("connection", "proxy-connection", "proxy-authorization", "keep-alive")


class Relay:
    """Inbound relay to the runtime API (the Swarm driver's way in; see the module doc)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Relay one connection both ways to the runtime API."""
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        try:
            await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))
        finally:
            up_writer.close()
            writer.close()


async def serve(rules: list[Rule], port: int, relay: tuple[str, int, int] | None = None) -> None:
    """Listen on all interfaces until killed; relay = (runtime host, its port, listen port)."""
    server = await asyncio.start_server(Proxy(rules).handle, "0.0.0.0", port, limit=HEAD_LIMIT)
    _log("egress proxy started", port=port, allow=[f"{s}://{h}:{p}{x}" for s, h, p, x in rules])
    servers = [server]
    if relay is not None:
        host, to_port, listen = relay
        servers.append(await asyncio.start_server(Relay(host, to_port).handle, "0.0.0.0", listen))
        _log("runtime relay started", port=listen, to=f"{host}:{to_port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # PID 1 ignores SIGTERM without a handler
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        for each in servers:
            await stack.enter_async_context(each)
        await stop.wait()


def relay_config(environ: dict[str, str]) -> tuple[str, int, int] | None:
    """(runtime host, runtime port, listen port) from EGRESS_RELAY_TO/PORT, or None."""
    target, listen = environ.get("EGRESS_RELAY_TO", ""), environ.get("EGRESS_RELAY_PORT", "")
    if not target or not listen.isdigit():
        return None
    host, _, port = target.rpartition(":")
    return (host, int(port), int(listen)) if host and port.isdigit() else None


def main() -> int:
    """Entry point."""
    rules = parse_allowlist(os.environ.get("EGRESS_ALLOW", ""))
    port = int(os.environ.get("EGRESS_PORT", "3128"))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(rules, port, relay_config(dict(os.environ))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

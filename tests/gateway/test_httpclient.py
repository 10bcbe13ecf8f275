"""The gateway's own upstream HTTP client, and the hot path's stream edge cases.

A scripted raw-socket server stands in for the upstream so each test controls
exactly what goes over the wire: keep-alive, chunked SSE, close-delimited
bodies, silence, dropped connections.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import select

from core.db.models import UsageEvent
from gateway.httpclient import (
    ConnectError,
    HttpClient,
    LocalProtocolError,
    ReadTimeout,
    RemoteProtocolError,
)
from tests.gateway.helpers import bearer, chat, create_tenant, issue, running_gateway

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
JSON_OK = b'{"ok":true}'
MODEL = "openai/gpt-4o"


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request's body (None when the client closed the connection)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


def json_response(body: bytes = JSON_OK, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + extra
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Server]:
    server = Server(handler)
    srv = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        yield server
    finally:
        srv.close()


async def keep_alive_json(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await read_request(reader) is not None:
        writer.write(json_response())
        await writer.drain()


async def test_keep_alive_connection_is_reused() -> None:
    client = HttpClient(read_timeout=2)
    async with serving(keep_alive_json) as server:
        for _ in range(5):
            response = await client.post(server.url, b"{}", [("content-type", "application/json")])
            assert response.status == 200
            assert await response.aread() == JSON_OK
        assert server.connections == 1
        assert client.idle_connections(server.url) == 1
        await client.aclose()


async def test_concurrent_calls_over_the_cap_wait_for_a_connection() -> None:
    client = HttpClient(read_timeout=2, max_connections=2)
    async with serving(keep_alive_json) as server:

        async def one() -> bytes:
            response = await client.post(server.url, b"{}", [])
            return await response.aread()

        assert await asyncio.gather(*(one() for _ in range(10))) == [JSON_OK] * 10
        assert server.connections <= 2
        await client.aclose()


async def test_chunked_stream_is_delivered_as_it_arrives() -> None:
    second = asyncio.Event()

    async def sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        first = b"data: one\n\n"
        writer.write(b"%x\r\n%s\r\n" % (len(first), first))
        await writer.drain()
        await second.wait()  # the client must have the first event before we go on
        last = b"data: [DONE]\n\n"
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(last), last))
        await writer.drain()
        await read_request(reader)

    client = HttpClient(read_timeout=2)
    async with serving(sse) as server:
        response = await client.post(server.url, b"{}", [])
        chunks = []
        async for chunk in response:
            chunks.append(chunk)
            second.set()
        assert chunks == [b"data: one\n\n", b"data: [DONE]\n\n"]
        assert client.idle_connections(server.url) == 1  # complete: kept alive
        await client.aclose()


async def test_close_delimited_body_http10() -> None:
    async def http10(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: a\n\n")
        await writer.drain()
        writer.write(b"data: b\n\n")

    client = HttpClient(read_timeout=2)
    async with serving(http10) as server:
        response = await client.post(server.url, b"{}", [])
        assert await response.aread() == b"data: a\n\ndata: b\n\n"
        assert client.idle_connections(server.url) == 0
        await client.aclose()


async def test_silent_upstream_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    client = HttpClient(read_timeout=0.2)
    async with serving(silent) as server:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ReadTimeout):
            await client.post(server.url, b"{}", [])
        assert loop.time() - t0 < 1
        await client.aclose()


async def test_stream_that_stalls_times_out_between_chunks() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    client = HttpClient(read_timeout=0.2)
    async with serving(stall) as server:
        response = await client.post(server.url, b"{}", [])
        assert await response.__anext__() == b"abc"
        with pytest.raises(ReadTimeout):
            await response.__anext__()
        await response.aclose()
        await client.aclose()


async def test_refused_connection_is_a_connect_error() -> None:
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    client = HttpClient(connect_timeout=1)
    with pytest.raises(ConnectError):
        await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", b"{}", [])
    await client.aclose()


async def test_idle_connection_closed_by_upstream_is_retried_on_a_new_one() -> None:
    async def one_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(json_response())  # keep-alive advertised, then dropped
        await writer.drain()

    client = HttpClient(read_timeout=2)
    async with serving(one_per_connection) as server:
        for _ in range(3):
            response = await client.post(server.url, b"{}", [])
            assert await response.aread() == JSON_OK
            await asyncio.sleep(0.05)  # let the close arrive (or not) before the next call
        assert server.connections == 3
        await client.aclose()


async def test_connection_dropped_mid_body_is_a_protocol_error() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()

    client = HttpClient(read_timeout=2)
    async with serving(cut) as server:
        response = await client.post(server.url, b"{}", [])
        with pytest.raises(RemoteProtocolError):
            await response.aread()
        await client.aclose()


async def test_header_values_cannot_inject_lines() -> None:
    client = HttpClient()
    with pytest.raises(LocalProtocolError):
        await client.post("http://127.0.0.1:9/x", b"{}", [("authorization", "Bearer a\r\nx: y")])


# --------------------------------------------------------------------------- through the gateway


def sse_event(obj: dict) -> bytes:
    data = b"data: " + json.dumps(obj).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNK = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"delta": {"content": "hi"}}]}


def events(db, tenant: str) -> list[UsageEvent]:
    with db.tenant_session(tenant) as s:
        return list(s.scalars(select(UsageEvent).order_by(UsageEvent.id)))


async def test_stream_cut_mid_way_ends_with_an_error_event_and_is_metered(db, store) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + sse_event(CHUNK))
        await writer.drain()

    tenant = create_tenant(db, plan="pro")
    async with serving(cut) as server:
        base = server.url.removesuffix("/chat/completions")
        async with running_gateway(db, store, [base]) as h:
            r = await h.client.post(
                "/v1/chat/completions",
                json=chat(MODEL, "hi", stream=True),
                headers=bearer(issue(db, tenant)),
            )
            await h.flush()
    assert r.status_code == 200
    assert '"content": "hi"' in r.text
    assert '"code": "upstream_error"' in r.text
    (event,) = events(db, tenant)
    assert (event.outcome, event.streamed) == ("upstream_error", True)


async def test_client_leaving_mid_stream_aborts_the_upstream_and_meters_cancelled(
    db, store
) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + sse_event(CHUNK))
        await writer.drain()
        await asyncio.sleep(10)  # a provider that stalls: only the abort can end this call

    tenant = create_tenant(db, plan="pro")
    async with serving(endless) as server:
        base = server.url.removesuffix("/chat/completions")
        async with running_gateway(db, store, [base], timeout_s=30) as h:
            body = json.dumps(chat(MODEL, "hi", stream=True)).encode()
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/v1/chat/completions",
                "headers": [(b"authorization", f"Bearer {issue(db, tenant)}".encode())],
            }
            got_body = asyncio.Event()
            sent: list[dict] = []

            async def receive() -> dict:
                if not sent:
                    return {"type": "http.request", "body": body, "more_body": False}
                await got_body.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict) -> None:
                sent.append(message)
                if message.get("body"):
                    got_body.set()  # the caller leaves once the first event reached it

            await asyncio.wait_for(h.app(scope, receive, send), 5)
            await h.flush()
    assert sent[0]["status"] == 200
    assert b'"content": "hi"' in sent[1]["body"]
    (event,) = events(db, tenant)
    assert event.outcome == "cancelled"


def test_sse_tap_passthrough_finds_split_usage_and_estimates_lazily() -> None:
    from gateway.relay import SseTap

    content = b'data: {"choices":[{"delta":{"content":"abcd"}}],"usage":null}\n\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
    tap = SseTap()
    assert tap.passthrough(content[:10], keep_usage=False) == b""  # no complete line yet
    assert tap.passthrough(content[10:], keep_usage=False) == content
    assert tap.out_chars == 4  # decoded only when asked
    assert tap.passthrough(usage[:30], keep_usage=False) == b""
    assert tap.passthrough(usage[30:] + b"data: [DONE]\n\n", False) == b"\ndata: [DONE]\n\n"
    assert tap.has_usage() and tap.usage == {"prompt_tokens": 3, "completion_tokens": 1}
    kept = SseTap()
    assert kept.passthrough(usage, keep_usage=True) == usage


# --------------------------------------------------------------------------- one host, many paths


async def test_requests_to_one_host_keep_their_own_path_and_headers() -> None:
    """Issue 11: the request line once came from the first URL seen on a host."""
    seen: list[tuple[str, str]] = []

    async def recording(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode().split("\r\n")
            fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            fields = {k.lower(): v for k, v in fields.items()}
            await reader.readexactly(int(fields.get("content-length", "0")))
            seen.append((lines[0].split(" ")[1], fields.get("authorization", "")))
            writer.write(json_response())
            await writer.drain()

    client = HttpClient(read_timeout=2, max_connections=1)  # one connection: reuse guaranteed
    async with serving(recording) as server:
        root = server.url.removesuffix("/v1/chat/completions")
        calls = [(f"{root}/tenant-a/v1/chat/completions", "Bearer key-a")]
        calls.append((f"{root}/tenant-b/v1/chat/completions?x=1", "Bearer key-b"))
        for url, auth in calls * 3:
            response = await client.post(url, b"{}", [("authorization", auth)])
            assert await response.aread() == JSON_OK
        assert server.connections == 1
        await client.aclose()
    expected = [("/tenant-a/v1/chat/completions", "Bearer key-a")]
    expected.append(("/tenant-b/v1/chat/completions?x=1", "Bearer key-b"))
    assert seen == expected * 3

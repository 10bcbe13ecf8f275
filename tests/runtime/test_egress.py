"""The egress proxy and the runtime's proxy-aware client, over real sockets on this host."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import httpclient
from runtime.config import ConfigError, with_secrets_file
from runtime.egress import Proxy, parse_allowlist
from tests.fakes.openai_upstream import FakeOpenAI


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


async def _with_proxy(allow: str, body) -> object:
    server = await asyncio.start_server(Proxy(parse_allowlist(allow)).handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await body(port)
    finally:
        server.close()
        await server.wait_closed()


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return out


def test_client_reaches_an_allowed_url_through_the_proxy(upstream, monkeypatch) -> None:
    base = f"http://127.0.0.1:{upstream.port}/v1"

    async def body(port: int) -> tuple[int, int]:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        ok = await httpclient.request_json("GET", f"{base}/models")
        metrics = await httpclient.request_json("GET", f"http://127.0.0.1:{upstream.port}/metrics")
        return ok.status, metrics.status

    assert asyncio.run(_with_proxy(base, body)) == (200, 403)


def test_proxy_refuses_unlisted_hosts_ports_and_tunnels(upstream) -> None:
    allow = f"http://127.0.0.1:{upstream.port}/v1 https://api.telegram.org"

    async def body(port: int) -> list[bytes]:
        return [
            await _raw(port, b"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\n\r\n"),
            await _raw(port, b"GET http://169.254.169.254/ HTTP/1.1\r\nHost: x\r\n\r\n"),
            await _raw(port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
            await _raw(port, f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1\r\n\r\n".encode()),
            await _raw(port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"),
        ]

    outcomes = asyncio.run(_with_proxy(allow, body))
    assert [o.split(b" ")[1] for o in outcomes] == [b"403", b"403", b"403", b"403", b"400"]


def test_one_request_per_connection_so_pipelining_cannot_leave_the_prefix(upstream) -> None:
    allow = f"http://127.0.0.1:{upstream.port}/v1"
    first = f"GET http://127.0.0.1:{upstream.port}/v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
    second = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"

    async def body(port: int) -> bytes:
        return await _raw(port, (first + second).encode())

    out = asyncio.run(_with_proxy(allow, body))
    assert out.split(b" ")[1] == b"200" and b"fake-model" in out
    assert [r.path for r in upstream.requests] == ["/v1/models"]


def test_secrets_file_is_merged_over_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "runtime.json"
    path.write_text(json.dumps({"RUNTIME_API_TOKEN": "from-file"}))
    env = with_secrets_file({"TINYAGI_SECRETS_FILE": str(path), "RUNTIME_API_TOKEN": "env"})
    assert env["RUNTIME_API_TOKEN"] == "from-file"
    assert with_secrets_file({"A": "b"}) == {"A": "b"}
    path.write_text("[1]")
    with pytest.raises(ConfigError, match="secrets file: must be a JSON object of strings"):
        with_secrets_file({"TINYAGI_SECRETS_FILE": str(path)})
    missing = {"TINYAGI_SECRETS_FILE": str(tmp_path / "missing.json"), "TINYAGI_SECRETS_WAIT": "0"}
    with pytest.raises(ConfigError, match="secrets file: not delivered within 0s"):
        with_secrets_file(missing)


def test_runtime_waits_for_the_secrets_file_the_driver_writes_after_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runtime.json"
    waited: list[bool] = []

    def deliver() -> None:
        time.sleep(0.5)
        tmp = tmp_path / ".runtime.json.tmp"
        tmp.write_text(json.dumps({"TELEGRAM_BOT_TOKEN": "late"}))
        tmp.rename(path)

    writer = threading.Thread(target=deliver)
    writer.start()
    env = with_secrets_file(
        {"TINYAGI_SECRETS_FILE": str(path), "TINYAGI_SECRETS_WAIT": "10"},
        on_wait=lambda: waited.append(True),
    )
    writer.join()
    assert env["TELEGRAM_BOT_TOKEN"] == "late" and waited == [True]


def test_secrets_over_an_inherited_pipe(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as pipe:
        pipe.write(json.dumps({"OPENAI_API_KEY": "piped"}).encode())
    env = with_secrets_file({"TINYAGI_SECRETS_FD": str(read_end), "A": "b"})
    assert env == {"A": "b", "OPENAI_API_KEY": "piped"}
    with pytest.raises(OSError):
        os.fstat(read_end)  # read once, then closed


async def _slow_json_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """A minimal ASGI app that reads the body and answers after a moment, as the gateway
    does while it waits for the provider."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await asyncio.sleep(0.3)
    payload = json.dumps({"echo": json.loads(body or b"null")}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": payload})


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_a_uvicorn_upstream_answers_through_the_proxy(monkeypatch, http: str) -> None:
    """The gateway runs under uvicorn, which drops a connection whose client half-closed:
    the proxy must keep its upstream side open until the answer is back."""
    import uvicorn

    from tests.conftest import free_port

    up_port = free_port()
    base = f"http://127.0.0.1:{up_port}/v1"

    async def body(port: int) -> tuple[int, object]:
        config = uvicorn.Config(_slow_json_app, host="127.0.0.1", port=up_port, http=http,
                                log_level="warning", lifespan="off")  # fmt: skip
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
            await asyncio.sleep(0.02)
        try:
            monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            r = await httpclient.request_json("POST", f"{base}/chat/completions", {"q": 1})
            return r.status, r.json()
        finally:
            server.should_exit = True
            await task

    assert asyncio.run(_with_proxy(base, body)) == (200, {"echo": {"q": 1}})


def test_a_connection_closed_without_an_answer_says_so() -> None:
    """The runtime's log names the failure an operator must look for (the gateway or the
    egress proxy hung up), not a bare exception class."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async def body() -> str:
        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await httpclient.request_json("POST", f"http://127.0.0.1:{port}/v1/x", {"a": 1})
        except httpclient.HttpError as exc:
            return str(exc)
        finally:
            server.close()
            await server.wait_closed()
        return "answered"

    assert asyncio.run(body()) == "connection closed before a response"


async def test_relay_passes_bytes_through_to_the_runtime_api(upstream) -> None:
    """The Swarm driver's way in: bytes to the relay port reach the runtime API's port."""
    from runtime.egress import Relay, relay_config

    assert relay_config({"EGRESS_RELAY_TO": "svc:3777", "EGRESS_RELAY_PORT": "3780"}) == (
        "svc",
        3777,
        3780,
    )
    assert relay_config({"EGRESS_RELAY_TO": "svc", "EGRESS_RELAY_PORT": "3780"}) is None
    assert relay_config({}) is None
    server = await asyncio.start_server(Relay("127.0.0.1", upstream.port).handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        request = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        out = await _raw(port, request)
    finally:
        server.close()
        await server.wait_closed()
    assert out.startswith(b"HTTP/1.0 200") and b"fake-model" in out  # the upstream answered

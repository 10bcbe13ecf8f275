"""Getting an answer and relaying it: JSON, OpenAI SSE passthrough, Anthropic SSE.

Streams are passed through chunk by chunk; a tap watches the data lines for the
usage block (we ask upstreams for ``stream_options.include_usage``). If the
upstream never sends usage, tokens are estimated with the demo rule and the
call is metered as ``ok_estimated``.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.plans import DEMO_MODEL
from gateway import demo
from gateway.anthropic import StreamEncoder
from gateway.errors import upstream_rejection
from gateway.httpclient import Response, UpstreamError
from gateway.service import DEMO_UPSTREAM, Call, Gateway
from gateway.upstreams import NoUpstreamAvailable

log = logging.getLogger("gateway.relay")
STREAM_ERROR = "The model provider stopped answering mid-stream."


async def _noop() -> None:
    return None


def _nothing() -> None:
    return None


@dataclass(slots=True)
class StreamSource:
    """Raw SSE bytes from an upstream (or the demo model) and how to release them.

    ``abort`` stops a read in progress (the client went away): the reader gets
    ``ResponseAborted``, which is not an upstream failure.
    """

    chunks: AsyncIterator[bytes]
    aclose: Callable[[], Awaitable[None]] = _noop
    abort: Callable[[], None] = _nothing


def request_id() -> str:
    """An OpenAI-looking completion id."""
    return "chatcmpl-" + uuid.uuid4().hex


async def _reject(gw: Gateway, call: Call, response: Response) -> None:
    # Drop the body unread: provider error text can quote the key we sent.
    status = response.status
    await response.aclose()
    log.info("upstream %s refused a call with HTTP %d", call.upstream, status)
    gw.metrics.upstream_refusals.labels(
        call.upstream or "unknown", call.ctx.mode, str(status)
    ).inc()
    raise upstream_rejection(status, byok=call.ctx.mode == "byok")


async def fetch_json(
    gw: Gateway, call: Call, payload: dict[str, Any], raw: bytes
) -> tuple[bytes, dict[str, Any]]:
    """A non-streamed completion as (body bytes, dict): demo, or upstream with failover."""
    if call.model == DEMO_MODEL:
        call.upstream = DEMO_UPSTREAM
        data = demo.completion(payload, request_id())
        return json.dumps(data).encode(), data
    response = await gw.send(call, raw)
    if response.status >= 400:
        await _reject(gw, call, response)
    try:
        content = await response.aread()
    except UpstreamError:
        log.warning("answer from %s broke off", call.upstream)
        raise NoUpstreamAvailable("The model provider stopped answering mid-response.") from None
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise NoUpstreamAvailable("The model provider sent an unreadable answer.")
    return content, parsed


def usage_of(
    call: Call, payload: dict[str, Any], usage: Any, out_chars: int
) -> tuple[int, int, str]:
    """``(input, output, outcome)`` from an upstream usage block, else estimated."""
    if isinstance(usage, dict) and "prompt_tokens" in usage:
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), "ok"
    est_out = (out_chars + 3) // 4
    return demo.prompt_tokens(payload.get("messages") or []), est_out, "ok_estimated"


def message_chars(data: dict[str, Any]) -> int:
    """Characters of generated text in a non-streamed answer (for estimates)."""
    total = 0
    for choice in data.get("choices") or []:
        msg = choice.get("message") or {}
        total += len(msg.get("content") or "")
        for call in msg.get("tool_calls") or []:
            total += len((call.get("function") or {}).get("arguments") or "")
    return total


async def open_stream(gw: Gateway, call: Call, payload: dict[str, Any]) -> StreamSource:
    """Start a streamed completion; errors before the first byte raise normally."""
    call.streamed = True
    if call.model == DEMO_MODEL:
        call.upstream = DEMO_UPSTREAM
        return StreamSource(demo.stream_bytes(payload, request_id()))
    body = dict(payload)
    body["stream"] = True
    body["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
    response = await gw.send(call, json.dumps(body).encode())
    if response.status >= 400:
        await _reject(gw, call, response)
    return StreamSource(response, response.aclose, response.abort)


_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_DEFER_LIMIT = 1 << 20  # bytes of unparsed SSE kept for a late text-length estimate


class SseTap:
    """Splits SSE bytes into lines and notes usage and generated text length.

    ``passthrough`` (OpenAI relay) only JSON-decodes lines that carry a usage
    object; the other lines are kept aside and decoded only if the stream ends
    without usage and the text length is needed for an estimate.
    """

    def __init__(self) -> None:
        self._tail = b""
        self.usage: dict[str, Any] | None = None
        self._chars = 0
        self._deferred: list[bytes] = []
        self._deferred_size = 0

    @property
    def out_chars(self) -> int:
        """Characters of generated text seen so far."""
        if self._deferred:
            deferred, self._deferred, self._deferred_size = self._deferred, [], 0
            for block in deferred:
                for line in block.split(b"\n"):
                    self._parse(line)
        return self._chars

    def has_usage(self) -> bool:
        """Whether the upstream reported usage with token counts."""
        return self.usage is not None and "prompt_tokens" in self.usage

    def feed(self, chunk: bytes) -> list[tuple[bytes, dict[str, Any] | None]]:
        """Complete lines in ``chunk`` (with what came before), each with its parsed data."""
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()
        return [(line, self._parse(line)) for line in lines]

    def passthrough(self, chunk: bytes, keep_usage: bool) -> bytes:
        """The complete lines of ``chunk`` to forward (a usage-only event dropped unless kept)."""
        data = self._tail + chunk if self._tail else chunk
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:]
        if not cut:
            return b""
        block = data[:cut] if cut < len(data) else data
        if _USAGE_OBJECT.search(block) is None:
            if self.usage is None:
                self._deferred.append(block)
                self._deferred_size += len(block)
                if self._deferred_size > _DEFER_LIMIT:
                    _ = self.out_chars  # bound memory: count now
            return block
        out = []
        for line in block.split(b"\n")[:-1]:
            obj = self._parse(line)
            if obj is not None and not keep_usage and "usage" in obj and not obj.get("choices"):
                continue
            out.append(line)
        return b"\n".join(out) + b"\n" if out else b""

    def rest(self) -> bytes:
        """Bytes after the last newline (a stream that did not end cleanly)."""
        tail, self._tail = self._tail, b""
        return tail

    def _parse(self, line: bytes) -> dict[str, Any] | None:
        if not line.startswith(b"data:"):
            return None
        data = line[5:].strip()
        if not data.startswith(b"{"):
            return None
        try:
            obj = json.loads(data)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        for choice in obj.get("choices") or ():
            delta = choice.get("delta") or {}
            self._chars += len(delta.get("content") or "")
            for tc in delta.get("tool_calls") or ():
                self._chars += len((tc.get("function") or {}).get("arguments") or "")
        return obj


async def _release(source: StreamSource) -> None:
    # Never suspends for an upstream response, so a cancellation cannot leak the connection.
    await source.aclose()


async def relay_openai(
    gw: Gateway, call: Call, payload: dict[str, Any], source: StreamSource, keep_usage: bool
) -> AsyncIterator[bytes]:
    """Pass OpenAI SSE through; drop the usage-only chunk unless the client asked for it."""
    tap, outcome = SseTap(), "cancelled"
    try:
        async for raw in source.chunks:
            if out := tap.passthrough(raw, keep_usage):
                yield out
        if tail := tap.rest():
            yield tail + b"\n\n"
        outcome = "ok"
    except UpstreamError as exc:
        log.warning("stream from %s broke (%s)", call.upstream, type(exc).__name__)
        outcome = "upstream_error"
        err = {"error": {"message": STREAM_ERROR, "type": "server_error", "code": "upstream_error"}}
        yield b"data: " + json.dumps(err).encode() + b"\n\n"
    finally:
        _meter_stream(gw, call, payload, tap, outcome)
        await _release(source)


async def relay_anthropic(
    gw: Gateway, call: Call, payload: dict[str, Any], source: StreamSource, enc: StreamEncoder
) -> AsyncIterator[bytes]:
    """Re-encode OpenAI SSE as Anthropic events (message_start ... message_stop)."""
    tap, outcome = SseTap(), "cancelled"
    try:
        yield enc.start()
        async for raw in source.chunks:
            out = b"".join(enc.chunk(obj) for _, obj in tap.feed(raw) if obj is not None)
            if out:
                yield out
        chars = 0 if tap.has_usage() else tap.out_chars
        inp, outp, _ = usage_of(call, payload, tap.usage, chars)
        outcome = "ok"
        yield enc.finish(inp, outp)
    except UpstreamError as exc:
        log.warning("stream from %s broke (%s)", call.upstream, type(exc).__name__)
        outcome = "upstream_error"
        err = {"type": "error", "error": {"type": "api_error", "message": STREAM_ERROR}}
        yield f"event: error\ndata: {json.dumps(err)}\n\n".encode()
    finally:
        _meter_stream(gw, call, payload, tap, outcome)
        await _release(source)


def _meter_stream(
    gw: Gateway, call: Call, payload: dict[str, Any], tap: SseTap, outcome: str
) -> None:
    chars = 0 if tap.has_usage() else tap.out_chars
    inp, outp, usage_outcome = usage_of(call, payload, tap.usage, chars)
    # A cut or cancelled stream still consumed tokens: meter what we saw.
    gw.record(call, usage_outcome if outcome == "ok" else outcome, inp, outp)

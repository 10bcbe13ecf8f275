"""Anthropic Messages API <-> OpenAI chat-completions translation.

Upstreams speak OpenAI chat-completions; ``/v1/messages`` clients speak
Anthropic. Text, system prompts, stop sequences and tool use are translated
both ways, streamed or not.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from core.errors import InvalidInput

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _text_of(blocks: Any) -> str:
    if isinstance(blocks, str):
        return blocks
    if isinstance(blocks, list):
        return "".join(
            b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _convert_message(msg: dict[str, Any]) -> list[dict[str, Any]]:
    role, content = msg.get("role"), msg.get("content")
    if role not in ("user", "assistant"):
        raise InvalidInput("messages[].role must be 'user' or 'assistant'.", field="messages")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise InvalidInput(
            "messages[].content must be a string or a list of blocks.", field="messages"
        )
    out: list[dict[str, Any]] = []
    tool_calls = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id", ""),
                    "content": _text_of(block.get("content", "")),
                }
            )
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {
                        "name": block.get("name", ""),
                        "arguments": json.dumps(block.get("input", {})),
                    },
                }
            )
    text = _text_of(content)
    if text or tool_calls:
        main: dict[str, Any] = {"role": role, "content": text or None}
        if tool_calls:
            main["tool_calls"] = tool_calls
        out.append(main)
    return out


def to_openai_request(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat-completions request equivalent to an Anthropic Messages request."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("'messages' must be a non-empty list.", field="messages")
    out: list[dict[str, Any]] = []
    system = _text_of(body.get("system", ""))
    if system:
        out.append({"role": "system", "content": system})
    for msg in messages:
        if not isinstance(msg, dict):
            raise InvalidInput("messages[] must be objects.", field="messages")
        out.extend(_convert_message(msg))
    req: dict[str, Any] = {
        "model": body.get("model"),
        "messages": out,
        "stream": bool(body.get("stream")),
    }
    if "max_tokens" in body:
        req["max_tokens"] = body["max_tokens"]
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
    ):
        if src in body:
            req[dst] = body[src]
    if body.get("tools"):
        req["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description", ""),
                    "parameters": t.get("input_schema", {"type": "object"}),
                },
            }
            for t in body["tools"]
        ]
    return req


def _tool_input(arguments: str | None) -> Any:
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return {"_raw": arguments}


def to_anthropic_response(data: dict[str, Any], model: str, usage: tuple[int, int]) -> dict:
    """An Anthropic Messages response from an OpenAI chat completion."""
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_id("toolu"),
                "name": fn.get("name", ""),
                "input": _tool_input(fn.get("arguments")),
            }
        )
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }


def new_id(prefix: str) -> str:
    """An Anthropic-looking identifier (``msg_...``, ``toolu_...``)."""
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One Anthropic SSE event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class StreamEncoder:
    """Turns OpenAI chat-completion chunks into Anthropic stream events."""

    def __init__(self, model: str, input_estimate: int) -> None:
        self.model = model
        self._input_estimate = input_estimate
        self._open: tuple[str, int] | None = None  # ("text", -1) or ("tool", openai index)
        self._index = -1
        self.stop_reason = "end_turn"

    def start(self) -> bytes:
        """``message_start`` (input tokens are an estimate until ``message_delta``)."""
        return sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": new_id("msg"),
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": self._input_estimate, "output_tokens": 0},
                },
            },
        )

    def _switch(self, key: tuple[str, int], block: dict[str, Any]) -> bytes:
        out = self._close()
        self._index += 1
        self._open = key
        return out + sse(
            "content_block_start",
            {"type": "content_block_start", "index": self._index, "content_block": block},
        )

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return sse("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def chunk(self, obj: dict[str, Any]) -> bytes:
        """Events for one OpenAI chunk (may be empty)."""
        out = b""
        for choice in obj.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self._open != ("text", -1):
                    out += self._switch(("text", -1), {"type": "text", "text": ""})
                out += sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": self._index,
                        "delta": {"type": "text_delta", "text": delta["content"]},
                    },
                )
            for call in delta.get("tool_calls") or []:
                out += self._tool_delta(call)
            if choice.get("finish_reason"):
                self.stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def _tool_delta(self, call: dict[str, Any]) -> bytes:
        out = b""
        fn = call.get("function") or {}
        key = ("tool", int(call.get("index", 0)))
        if self._open != key:
            out += self._switch(
                key,
                {
                    "type": "tool_use",
                    "id": call.get("id") or new_id("toolu"),
                    "name": fn.get("name", ""),
                    "input": {},
                },
            )
        if fn.get("arguments"):
            out += sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": self._index,
                    "delta": {"type": "input_json_delta", "partial_json": fn["arguments"]},
                },
            )
        return out

    def finish(self, input_tokens: int, output_tokens: int) -> bytes:
        """Close the open block, then ``message_delta`` with usage and ``message_stop``."""
        return (
            self._close()
            + sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                    "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
                },
            )
            + sse("message_stop", {"type": "message_stop"})
        )

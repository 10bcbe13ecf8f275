"""The offline demo model ``tinyclaw/demo``: deterministic, free, clearly labelled.

It lets the whole platform run with no provider key. Replies:

- ``[@agent: text]`` when the last user message has a line ``handoff: @agent text``
  (so multi-agent team hand-offs can be demonstrated offline);
- otherwise ``[demo model] You said: <last user message>``.

Token rule (documented so usage blocks are predictable): a text costs
``ceil(len(text) / 4)`` tokens; the input is the sum over every message's text.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from core.plans import DEMO_MODEL

HANDOFF = re.compile(r"^\s*handoff:\s*@([\w.-]+)\s*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)
STREAM_WORDS_PER_CHUNK = 3


def count_tokens(text: str) -> int:
    """Deterministic token estimate: one token per four characters, rounded up."""
    return (len(text) + 3) // 4


def content_text(content: Any) -> str:
    """The text of an OpenAI message ``content`` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and "text" in part
        )
    return ""


def prompt_tokens(messages: Iterable[Any]) -> int:
    """Input tokens of a chat-completions ``messages`` list by the demo rule."""
    return sum(
        count_tokens(content_text(m.get("content"))) for m in messages if isinstance(m, dict)
    )


def reply_for(messages: list[Any]) -> str:
    """The demo model's deterministic answer to ``messages``."""
    last = next(
        (m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None
    )
    text = content_text(last.get("content")) if last else ""
    match = HANDOFF.search(text)
    if match:
        return f"[@{match.group(1)}: {match.group(2)}]"
    return f"[demo model] You said: {text.strip()}"


def _usage(messages: list[Any], reply: str) -> dict[str, int]:
    inp, out = prompt_tokens(messages), count_tokens(reply)
    return {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out}


def completion(body: dict[str, Any], request_id: str) -> dict[str, Any]:
    """A full (non-streamed) chat-completions answer."""
    messages = body.get("messages") or []
    reply = reply_for(messages)
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": DEMO_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(messages, reply),
    }


def _words(reply: str) -> list[str]:
    parts = reply.split(" ")
    step = STREAM_WORDS_PER_CHUNK
    return [
        " ".join(parts[i : i + step]) + (" " if i + step < len(parts) else "")
        for i in range(0, len(parts), step)
    ]


def stream_chunks(body: dict[str, Any], request_id: str) -> list[dict[str, Any]]:
    """The streamed answer as chat-completion chunks, usage chunk last (as OpenAI does)."""
    messages = body.get("messages") or []
    reply = reply_for(messages)
    base = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": DEMO_MODEL,
    }
    chunks = [
        {
            **base,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
    ]
    chunks += [
        {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        for piece in _words(reply)
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({**base, "choices": [], "usage": _usage(messages, reply)})
    return chunks


async def stream_bytes(body: dict[str, Any], request_id: str) -> AsyncIterator[bytes]:
    """The streamed answer as SSE bytes, exactly as an OpenAI-compatible upstream sends it."""
    for chunk in stream_chunks(body, request_id):
        yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"

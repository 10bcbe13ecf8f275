"""A fake OpenAI-compatible upstream (chat completions + models) for tests.

Replies are deterministic. By default a completion echoes the last user message
(`"echo: <text>"`); `script(reply, model=...)` sets a fixed text or a callable
`(request_json) -> str` for one model or for all. Failure injection:
`fail(times, status=500)` (status 429 adds a Retry-After header), `hang(times)`
(the request blocks until `release()` or `stop()`). Every request is recorded in
`requests` with its path, headers (incl. Authorization) and JSON body.

    up = FakeOpenAI(host="0.0.0.0").start()
    up.script(lambda req: "[@reviewer: check this]", model="coder-model")
    # runtime env: OPENAI_BASE_URL=up.base_url  (http://127.0.0.1:<port>/v1)

Streaming (`"stream": true`) sends SSE chunks and a final `usage` chunk when
`stream_options.include_usage` is set, then `data: [DONE]`.
Run standalone: `python -m tests.fakes.openai_upstream --port 8082`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes._http import BackgroundServer, JsonHandler

Reply = str | Callable[[dict[str, Any]], str]


@dataclass
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def authorization(self) -> str | None:
        """The Authorization header, if any."""
        return self.headers.get("authorization")


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: whitespace-separated words."""
    return len(text.split())


def echo(request: dict[str, Any]) -> str:
    """The default reply rule: echo the last user message."""
    users = [m for m in request.get("messages", []) if m.get("role") == "user"]
    return f"echo: {users[-1]['content'] if users else ''}"


class FakeOpenAI(BackgroundServer):
    """The fake upstream; scripting methods are thread-safe."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        models: list[str] | None = None,
    ) -> None:
        super().__init__(host, port)
        self.handler_class = _Handler
        self.api_key = api_key
        self.models = models or ["gpt-4o-mini", "fake-model"]
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._replies: dict[str | None, Reply] = {None: echo}
        self._failures: list[tuple[str, int]] = []  # ("status", code) or ("hang", 0)
        self._release = threading.Event()
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        """The OPENAI_BASE_URL to give a client on this machine (ends in /v1)."""
        return f"{self.root_url}/v1"

    def script(self, reply: Reply, model: str | None = None) -> None:
        """Set the reply (text or callable) for one model, or the default when model is None."""
        with self._lock:
            self._replies[model] = reply

    def fail(self, times: int = 1, status: int = 500) -> None:
        """Make the next `times` completions fail with status."""
        with self._lock:
            self._failures.extend([("status", status)] * times)

    def hang(self, times: int = 1) -> None:
        """Make the next `times` completions block until release() or stop()."""
        with self._lock:
            self._release.clear()
            self._failures.extend([("hang", 0)] * times)

    def release(self) -> None:
        """Let hanging requests go (they then fail with 503)."""
        self._release.set()

    def completions(self) -> list[RecordedRequest]:
        """The recorded chat-completion requests."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least count completion requests arrived; raise on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.completions()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.completions())} of {count} completion requests")
            time.sleep(0.02)
        return self.completions()

    def _on_stop(self) -> None:
        self._release.set()

    def _record(self, request: RecordedRequest) -> tuple[str, int] | None:
        with self._lock:
            self.requests.append(request)
            if request.path.endswith("/chat/completions") and self._failures:
                return self._failures.pop(0)
        return None

    def _reply_for(self, body: dict[str, Any]) -> str:
        with self._lock:
            reply = self._replies.get(body.get("model"), self._replies[None])
        return reply(body) if callable(reply) else reply


class _Handler(JsonHandler):
    fake: FakeOpenAI

    def do_GET(self) -> None:
        self.fake._record(RecordedRequest("GET", self.path, self._headers()))
        if not self._authorized():
            return
        if self.path.rstrip("/") == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                for m in self.fake.models
            ]
            self.send_json(200, {"object": "list", "data": data})
        else:
            self._error(404, "not_found", "Unknown route")

    def do_POST(self) -> None:
        body = self.params()
        failure = self.fake._record(RecordedRequest("POST", self.path, self._headers(), body))
        if not self._authorized():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, "not_found", "Unknown route")
            return
        if failure is not None:
            self._fail(*failure)
            return
        if not isinstance(body.get("messages"), list) or not body.get("model"):
            self._error(400, "invalid_request_error", "model and messages are required")
            return
        text = self.fake._reply_for(body)
        prompt = sum(count_tokens(str(m.get("content", ""))) for m in body["messages"])
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": count_tokens(text),
            "total_tokens": prompt + count_tokens(text),
        }
        completion_id = f"chatcmpl-fake-{next(self.fake._ids)}"
        if body.get("stream"):
            self._stream(completion_id, body, text, usage)
        else:
            self.send_json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": text},
                        }
                    ],
                    "usage": usage,
                },
            )

    def _stream(self, completion_id: str, body: dict, text: str, usage: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
        }
        words = text.split(" ")
        deltas = [{"role": "assistant", "content": ""}]
        deltas += [{"content": w if i == 0 else f" {w}"} for i, w in enumerate(words)]
        for delta in deltas:
            self._event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event({**base, "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, payload: dict) -> None:
        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()

    def _fail(self, kind: str, status: int) -> None:
        if kind == "hang":
            self.fake._release.wait()
            status = 503
        headers = {"Retry-After": "1"} if status == 429 else None
        self._error(status, "upstream_error", f"fake failure {status}", headers)

    def _authorized(self) -> bool:
        if (
            self.fake.api_key is None
            or self.headers.get("Authorization") == f"Bearer {self.fake.api_key}"
        ):
            return True
        self._error(401, "invalid_api_key", "Incorrect API key provided")
        return False

    def _error(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        self.send_json(status, {"error": {"message": message, "type": code, "code": code}}, headers)

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}


def main() -> None:
    """Serve the fake upstream until interrupted."""
    parser = argparse.ArgumentParser(description="fake OpenAI-compatible upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    fake = FakeOpenAI(args.host, args.port, api_key=args.api_key).start()
    print(f"fake OpenAI upstream on {fake.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()

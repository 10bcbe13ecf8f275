"""Shared plumbing for the fake HTTP services: a threaded stdlib server in the background."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


class QuietServer(ThreadingHTTPServer):
    """A threaded server whose handler threads never block interpreter exit."""

    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-response (for example a killed runtime) are normal here."""


class JsonHandler(BaseHTTPRequestHandler):
    """Request helpers: merged query/form/JSON parameters and JSON replies."""

    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def params(self) -> dict[str, Any]:
        """Query string, form body and JSON body merged, like the Bot API accepts."""
        params: dict[str, Any] = dict(parse_qsl(urlsplit(self.path).query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        kind = self.headers.get("Content-Type", "")
        if raw and "json" in kind:
            body = json.loads(raw)
            if isinstance(body, dict):
                params.update(body)
        elif raw:
            params.update(parse_qsl(raw.decode()))
        return params

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """Write a complete JSON response."""
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


class BackgroundServer:
    """Runs a QuietServer in a daemon thread; subclasses set `handler_class`."""

    handler_class: type[BaseHTTPRequestHandler]

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._server: QuietServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        assert self._server is not None, "call start() first"
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        """http://host:port as reachable from this machine."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> BackgroundServer:
        """Bind and serve in a background thread; returns self."""
        handler = type("BoundHandler", (self.handler_class,), {"fake": self})
        self._server = QuietServer((self.host, self._requested_port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._on_stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _on_stop(self) -> None:
        """Hook: release anything blocked inside handlers."""

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

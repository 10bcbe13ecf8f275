"""A TCP listener that records every connection it accepts (to prove none was made).

Answers each connection with one small HTTP 200 JSON response, so a request that
is *allowed* through also succeeds and shows up in ``connections``.
"""

from __future__ import annotations

import socket
import threading


class RecordingListener:
    """Accepts on ``host`` (an ephemeral port); ``connections`` lists peer addresses."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.connections: list[str] = []
        self.requests: list[bytes] = []
        self.sock.settimeout(0.05)  # so the accept loop notices stop() promptly
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RecordingListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def url(self, host: str | None = None, path: str = "/v1") -> str:
        """``http://<host>:<port><path>``; ``host`` defaults to the listening address."""
        shown = host or self.host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{self.port}{path}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(str(peer[0]))
            with conn:
                conn.settimeout(2)
                try:
                    self.requests.append(conn.recv(65536))
                    body = b'{"object": "list", "data": [{"id": "local-model"}]}'
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
                    )
                except OSError:
                    pass

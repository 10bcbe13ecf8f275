"""A fleet of registered tenants whose runtimes are only addresses, for sweeping at scale.

``AddressBook`` is a runtime driver test double that knows addresses and which runtimes
"exist" (it cannot start anything); ``register_fleet`` writes real tenant, deployment and
runtime-token rows so the health sweep probes each tenant as it would in production.
``hanging_server`` accepts connections and never answers (a wedged runtime).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from core import credentials as creds
from core.db import Database
from core.db.models import Deployment, User
from core.secrets import SecretStore
from core.tenants import create_tenant


@dataclass
class AddressBook:
    """Runtime driver double: ``address`` and ``list_tenants`` from dictionaries."""

    addresses: dict[str, str] = field(default_factory=dict)
    existing: set[str] = field(default_factory=set)
    removed: list[str] = field(default_factory=list)

    def address(self, tenant_id: str) -> str:
        """The tenant's runtime URL (KeyError when it has none)."""
        return self.addresses[tenant_id]

    def list_tenants(self) -> list[str]:
        """The runtimes that "exist"."""
        return sorted(self.existing)

    def remove(self, tenant_id: str, keep_volume: bool = False) -> None:
        """Forget the runtime, remembering that it was removed."""
        self.existing.discard(tenant_id)
        self.removed.append(tenant_id)


def register_fleet(
    db: Database, store: SecretStore, count: int, *, state: str = "healthy"
) -> list[str]:
    """``count`` tenants with a deployment in ``state`` and a runtime API token each."""
    with db.system_session() as s:
        user = User(email=f"fleet-{uuid.uuid4().hex[:12]}@example.com", password_hash="x")
        s.add(user)
        s.flush()
        ids = [
            create_tenant(s, owner_id=user.id, name=f"bot {i}", plan="pro").id for i in range(count)
        ]
        s.add_all(Deployment(tenant_id=tid, state=state) for tid in ids)
    for tid in ids:
        creds.ensure_generated(db, store, tid, creds.RUNTIME_API_TOKEN, "rt")
    return ids


class _Status(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True  # a request still sleeping does not hold up shutdown
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def answering_server() -> Iterator[str]:
    """A runtime stand-in whose ``/api/status`` answers ``ok``; yields its base URL."""
    with _serving(_Status) as url:
        yield url


@contextmanager
def slow_once_server(delay: float) -> Iterator[str]:
    """A runtime stand-in on a busy host: its first ``/api/status`` answers after
    ``delay`` seconds, later ones at once; yields its base URL."""
    first = threading.Event()

    class _SlowOnce(_Status):
        def do_GET(self) -> None:
            if not first.is_set():
                first.set()
                time.sleep(delay)
            super().do_GET()

    with _serving(_SlowOnce) as url:
        yield url


@contextmanager
def hanging_server() -> Iterator[str]:
    """Accepts TCP connections and never answers; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()

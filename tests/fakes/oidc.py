"""A local OpenID Connect provider for SSO tests: ``oidc-provider-mock`` on a free port.

Any client id is accepted; ``put_user`` sets the claims a subject gets; ``log_in`` plays
the browser at the provider's login form (it answers with a redirect to the client).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import oidc_provider_mock
import werkzeug.serving


class LocalOidc:
    """The running provider: its issuer URL and helpers to drive it."""

    def __init__(self, server: werkzeug.serving.BaseWSGIServer) -> None:
        self.issuer = f"http://127.0.0.1:{server.server_port}"

    def put_user(self, sub: str, **claims: object) -> None:
        """Set the claims the provider asserts for ``sub``."""
        r = httpx.put(f"{self.issuer}/users/{sub}", json=claims, timeout=10)
        r.raise_for_status()

    def log_in(self, authorize_url: str, sub: str) -> str:
        """Submit the provider's login form as ``sub``; the redirect back to the client."""
        r = httpx.post(authorize_url, data={"sub": sub}, timeout=10)
        assert r.status_code in (302, 303), r.text[:500]
        return r.headers["location"]


@contextmanager
def local_oidc() -> Iterator[LocalOidc]:
    """Run the provider on 127.0.0.1 (plain http: the mock needs Authlib told so)."""
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    app = oidc_provider_mock.app(require_nonce=True)
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield LocalOidc(server)
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()

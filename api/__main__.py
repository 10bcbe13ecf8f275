"""Run the API: ``python -m api`` (host, port and trusted proxies from ``TCC_*``)."""

from __future__ import annotations

from typing import Any

import uvicorn

from core.settings import Settings


def proxy_options(settings: Settings) -> dict[str, Any]:
    """Uvicorn's proxy-header options: ``X-Forwarded-For`` is believed only from
    ``TCC_TRUSTED_PROXIES`` (uvicorn's own default trusts loopback, which lets anyone on
    the machine, or behind a local tunnel, pick their address and dodge per-IP limits)."""
    if not settings.trusted_proxies:
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(settings.trusted_proxies)}


def server_config(settings: Settings, app: Any = "api.app:create_app", **kw: Any) -> uvicorn.Config:
    """The uvicorn configuration of the API (``app`` an import string or an ASGI app)."""
    options: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_level": "warning",
        **proxy_options(settings),
        **kw,
    }
    if isinstance(app, str):
        options["factory"] = True
    return uvicorn.Config(app, **options)


def main() -> None:
    """Serve the API with uvicorn."""
    uvicorn.Server(server_config(Settings())).run()


if __name__ == "__main__":
    main()

"""Run the gateway: ``python -m gateway`` (host, port and upstreams from ``TCC_*``)."""

from __future__ import annotations

import uvicorn

from core.db import Database, run_migrations
from core.logging import configure_logging
from core.secrets import build_secret_store
from core.settings import Settings


def main() -> None:
    """Apply migrations, build the app and serve it with uvicorn."""
    settings = Settings()
    configure_logging(settings.log_level)  # JSON lines, secrets redacted
    settings.ensure_data_dir()
    url = settings.resolved_database_url
    run_migrations(url)
    db = Database(url)

    from gateway.app import create_app

    app = create_app(settings, db, build_secret_store(settings, db))
    uvicorn.run(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        loop="uvloop",  # both come with uvicorn[standard]: the fastest loop and HTTP parser
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()

"""The FastAPI application: lifespan builds clients, routers serve the domains."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from api import admin, auth, billing, catalog, codec, dashboard, errors, health, webhooks
from api.tenants import endpoints as tenants
from api.tenants import pairing as tenant_pairing
from bundles.catalog import load_catalog, sync_catalog_to_db
from core.context import AppContext, build_context
from core.logging import configure_logging
from core.settings import Settings


def create_app(settings: Settings | None = None, *, context: AppContext | None = None) -> FastAPI:
    """Build the app; clients are created in the lifespan unless a ``context`` is given."""
    settings = settings or (context.settings if context else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        ctx = context or await build_context(settings)
        app.state.ctx = ctx
        app.state.catalog = load_catalog()
        with ctx.db.system_session() as session:
            sync_catalog_to_db(session, app.state.catalog)
        async with httpx.AsyncClient(timeout=httpx.Timeout(15, connect=5)) as http:
            app.state.http = http
            try:
                yield
            finally:
                if (stripe_client := ctx.extras.get("billing.stripe")) is not None:
                    await stripe_client.aclose()
                if context is None:
                    await ctx.close()

    app = FastAPI(
        title="TinyClaw Cloud",
        version="0.1.0",
        description="Hosted TinyClaw agent runtimes on Telegram: tenants, lifecycle, billing.",
        lifespan=lifespan,
    )
    errors.install(app)
    for router in (
        health.router,
        auth.router,
        catalog.router,
        tenants.router,
        tenant_pairing.router,
        webhooks.router,
        billing.router,
        admin.router,
        codec.router,
    ):
        app.include_router(router)
    dashboard.install(app)
    # Outermost: answers the Web UI's preflight before the session middleware sees it.
    app.add_middleware(codec.CodecCors, origin=settings.resolved_temporal_ui_url)
    return app

"""The FastAPI application: lifespan builds clients, routers serve the domains."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from api import (
    admin,
    alerts,
    auth,
    auth_email,
    billing,
    catalog,
    codec,
    dashboard,
    docs,
    errors,
    health,
    metrics,
    notifications,
    orgs,
    product_metrics,
    sandbox,
    webhooks,
)
from api.middleware import AuditOrigin, BodyLimit, BotPaths
from api.tenants import analytics as tenant_analytics
from api.tenants import backups as tenant_backups
from api.tenants import endpoints as tenants
from api.tenants import kept_logs as tenant_logs
from api.tenants import model_endpoints as tenant_models
from api.tenants import pairing as tenant_pairing
from api.tenants import plan as tenant_plan
from core.bundles.catalog import load_catalog, sync_catalog_to_db
from core.context import AppContext, build_context
from core.logging import configure_logging
from core.ratelimit import LoginThrottle, SlidingWindow, share_through
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
                if (reader := ctx.extras.pop("runtime_reader", None)) is not None:
                    await reader.http.aclose()
                if context is None:
                    await ctx.close()

    app = FastAPI(
        title="TinyClaw Cloud",
        version="0.1.0",
        description="Hosted TinyClaw agent runtimes on Telegram: tenants, lifecycle, billing.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    docs.install(app)
    # Behind several API replicas the counts live in Redis (TCC_REDIS_URL), shared.
    share_through(settings.redis_url.get_secret_value() if settings.redis_url else None)
    app.state.login_throttle = LoginThrottle()
    app.state.signup_limit = SlidingWindow(
        limit=settings.signups_per_hour_per_ip, window_s=3600, name="signups"
    )
    app.state.email_limit = SlidingWindow(limit=5, window_s=3600, name="account-emails")
    for router in (
        health.router,
        metrics.router,
        auth.router,
        auth_email.router,
        notifications.router,
        alerts.router,
        catalog.router,
        tenants.router,
        tenant_plan.router,
        tenant_models.router,
        tenant_pairing.router,
        tenant_backups.router,
        tenant_analytics.router,
        tenant_logs.router,
        webhooks.router,
        billing.router,
        admin.router,
        orgs.router,
        product_metrics.router,
        codec.router,
        sandbox.api_router,
    ):
        app.include_router(router)
    dashboard.install(app)
    # Outermost: answers the Web UI's preflight before the session middleware sees it.
    app.add_middleware(codec.CodecCors, origin=settings.resolved_temporal_ui_url)
    # Outermost of all: an oversized body is refused before anything reads it.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, form_limit=settings.max_form_bytes)
    app.add_middleware(AuditOrigin)  # every audit entry a request writes says where from
    app.add_middleware(BotPaths)  # outermost: /bots is /tenants for everything inside
    return app

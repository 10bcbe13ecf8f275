"""The FastAPI application: lifespan builds clients, routers serve the domains."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, health
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
        try:
            yield
        finally:
            if context is None:
                await ctx.close()

    app = FastAPI(
        title="TinyClaw Cloud",
        version="0.1.0",
        description="Hosted TinyClaw agent runtimes on Telegram: tenants, lifecycle, billing.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(health.router)
    return app

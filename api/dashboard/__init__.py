"""The customer dashboard: server-rendered pages under ``/app`` over the same services as the API.

``install(app)`` adds the session/CSRF middleware, the page routers, the static files
and HTML error pages for ``/app`` (the JSON API keeps its JSON errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api import sandbox
from api.dashboard import (
    admin_views,
    analytics_views,
    auth_views,
    backup_views,
    live,
    log_views,
    notification_views,
    operations,
    org_views,
    pairing_views,
    token_views,
    wizard,
)
from api.dashboard.middleware import DASHBOARD_PREFIX, SessionMiddleware
from api.dashboard.render import page, redirect
from core.errors import TinyClawError, Unauthorized

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def _wants_page(request: Request) -> bool:
    return request.url.path.startswith(DASHBOARD_PREFIX)


def _install_error_pages(app: FastAPI) -> None:
    # The JSON handlers of api.errors stay in charge outside /app.
    json_domain: Any = app.exception_handlers[TinyClawError]
    json_validation: Any = app.exception_handlers[RequestValidationError]

    async def domain(request: Request, exc: Exception) -> Any:
        if not _wants_page(request) or not isinstance(exc, TinyClawError):
            return await json_domain(request, exc)
        if isinstance(exc, Unauthorized):
            return redirect(request, "/app/login")
        return page(request, "error.html", exc.status_code, message=exc.message)

    async def validation(request: Request, exc: Exception) -> Any:
        if not _wants_page(request):
            return await json_validation(request, exc)
        message = "Some fields are missing or too long. Check the form and try again."
        return page(request, "error.html", 422, message=message)

    app.add_exception_handler(TinyClawError, domain)
    app.add_exception_handler(RequestValidationError, validation)


def install(app: FastAPI) -> None:
    """Mount the dashboard on ``app`` (after ``api.errors.install``)."""
    app.add_middleware(SessionMiddleware, context=lambda: app.state.ctx)
    for router in (
        auth_views.router, wizard.router, live.router, operations.router,
        admin_views.router, sandbox.router, token_views.router, pairing_views.router,
        notification_views.router, backup_views.router, analytics_views.router,
        log_views.router, org_views.router,
    ):  # fmt: skip
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _install_error_pages(app)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/app", status_code=303)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        """Browsers ask for /favicon.ico whatever the page says: the same icon, cached."""
        return FileResponse(
            STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
            headers={"Cache-Control": "public, max-age=86400"},
        )  # fmt: skip

"""API documentation: Swagger UI and ReDoc served from local files (they work offline),
the Bearer security scheme, and every error answer documented with its body schema.

FastAPI's own ``/docs`` and ``/redoc`` load their scripts from a CDN; here the assets
come from the ``fastapi-offline`` package and are mounted under ``/docs-assets``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.schemas import ErrorOut

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs-assets"
ERROR_REF = "#/components/schemas/ErrorOut"
BODY_METHODS = frozenset({"post", "put", "patch"})
WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})
DESCRIPTIONS = {
    "400": "Malformed request (for webhooks: a bad signature or event)",
    "401": "Missing, invalid or expired credentials",
    "402": "The bot's billing status does not allow this",
    "403": "Not allowed (role, scope, plan limit or CSRF)",
    "404": "Unknown, or owned by someone else",
    "409": "The current state does not allow this right now",
    "413": "The request body is over the size limit",
    "422": "Invalid input: the message says which field to fix",
    "429": "Too many requests: retry after the Retry-After seconds",
    "503": "A dependency (Temporal, Stripe, the runtime) is unavailable",
}
RATE_LIMITED = ("/auth/login", "/auth/signup", "/test-message")


def error_statuses(path: str, method: str, secured: bool) -> set[str]:
    """The error statuses an operation can answer with, from its shape."""
    codes = {"422"}
    if method in BODY_METHODS or path.startswith("/webhooks"):
        codes |= {"400", "413"}
    # /alerts answers Alertmanager's own bearer token (TCC_ALERT_WEBHOOK_TOKEN).
    if secured or path == "/auth/login" or path.startswith("/alerts"):
        codes |= {"401", "403"}
    if "{" in path or path.startswith(("/webhooks", "/admin", "/sandbox")):
        codes.add("404")
    if path == "/tenants" and method == "post":  # in an organization you are not part of
        codes.add("404")
    if method in WRITE_METHODS:
        codes |= {"409", "503"}
    if path.startswith(("/tenants/{tenant_id}", "/billing")) and method in WRITE_METHODS:
        codes.add("402")
    if any(marker in path for marker in RATE_LIMITED) or method in WRITE_METHODS:
        codes.add("429")
    if path.startswith("/tenants/{tenant_id}") and method == "get":
        codes |= {"409", "503"}
    return codes


def _document_errors(schema: dict[str, Any]) -> None:
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            secured = bool(op.get("security"))
            responses = op.setdefault("responses", {})
            for status in sorted(error_statuses(path, method, secured)):
                responses[status] = {
                    "description": DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
                }


def _bot_text(text: str) -> str:
    for old, new in (
        ("Tenants", "Bots"),
        ("tenants", "bots"),
        ("Tenant", "Bot"),
        ("tenant", "bot"),
    ):
        text = text.replace(old, new)
    return text


def bot_names(schema: dict[str, Any]) -> dict[str, Any]:
    """The public surface says "bot" (as the dashboard does): paths under /bots with a
    ``bot_id`` parameter, bot-named schemas and tags. The routes behind them are the
    /tenants ones (``api.middleware.BotPaths``), which stay accepted for existing clients."""

    def walk(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {(_bot_text(k) if key == "schemas" else k): walk(v, k)
                    for k, v in node.items()}  # fmt: skip
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        if isinstance(node, str) and key in ("$ref", "name", "title", "summary", "description",
                                             "operationId", "tags"):  # fmt: skip
            return _bot_text(node)
        return node

    paths = {_bot_text(path): walk(ops) for path, ops in schema.get("paths", {}).items()}
    out = walk({k: v for k, v in schema.items() if k != "paths"})
    out["paths"] = paths
    return out


def install(app: FastAPI) -> None:
    """Serve offline docs and a documented OpenAPI schema on ``app`` (built with
    ``docs_url=None, redoc_url=None``)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )  # fmt: skip
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["ErrorOut"] = ErrorOut.model_json_schema(ref_template=ERROR_REF)
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            _document_errors(schema)
            app.openapi_schema = bot_names(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )  # fmt: skip

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json", title=f"{app.title} API",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False,
        )  # fmt: skip

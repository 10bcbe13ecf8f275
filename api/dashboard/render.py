"""Rendering dashboard pages: templates, the CSRF token, notices, security headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.dashboard.middleware import PRE_COOKIE, new_pre_token
from core.accounts import Principal
from core.context import AppContext
from core.sessions import WebLogin
from core.settings import Settings

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
# Everything the pages load is ours: no inline script, no third-party origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self' https://checkout.stripe.com "
    "https://billing.stripe.com{extra}; base-uri 'none'"
)


def csp_for(settings: Settings) -> str:
    """The page CSP. Forms may lead to Stripe's Checkout and portal; an installation whose
    Stripe API is elsewhere (``TCC_STRIPE_API_BASE``: a Stripe-compatible or test server)
    serves its checkout pages from that origin, and the browser follows a form's redirect
    there only if ``form-action`` names it."""
    parts = urlsplit(settings.stripe_api_base or "")
    origin = f" {parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else ""
    return CSP.format(extra=origin if parts.netloc else "")


# Fixed messages picked by code from the query string, so a link can never inject text.
NOTICES = {
    "signed_up": "Welcome! Your account is ready. Let's create your first bot.",
    "logged_out": "You are logged out.",
    "password_reset": "Your password is changed. Log in with the new one.",
    "token_revoked": "Token revoked: it no longer works.",
    "billing_off": "Billing is off on this installation: your plan is assigned without payment.",
    "telegram_saved": "Telegram token saved: the bot uses it when it is deployed.",
    "telegram_applying": "New Telegram token saved. Your bot is restarting on it; the "
    "action history below says when it is live on the new bot (or why it kept the old one).",
    "model_saved": "Model mode saved.",
    "model_chosen": "Model saved. A running bot uses it once its configuration is next applied.",
    "billing_success": "Payment received: your plan is active.",
    "billing_cancelled": "Checkout was cancelled; no payment was taken.",
    "billing_portal": "Back from the billing portal.",
    "accepted": "Done: the action is queued. Its progress shows below.",
    "reset": "Reset queued: conversations will start fresh.",
    "deleted": "Deletion queued. The bot and its data are being removed.",
    "signal": "Signal sent to the tenant workflow.",
}


def web_login(request: Request) -> WebLogin | None:
    """The browser's login, when the session cookie is live."""
    login = getattr(request.state, "web_login", None)
    return login if isinstance(login, WebLogin) else None


def context_of(request: Request) -> AppContext:
    """The app's ``AppContext``."""
    ctx: AppContext = request.app.state.ctx
    return ctx


def page(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """Render a page (or an htmx fragment) with the user, CSRF token and notice."""
    login = web_login(request)
    settings = context_of(request).settings
    fresh_pre = None
    if login is None and not request.state.pre_csrf:
        fresh_pre = new_pre_token()
    csrf = login.csrf_token if login else (fresh_pre or request.state.pre_csrf)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "user": login.principal if login else None, "csrf_token": csrf,
            "notice": values.pop("notice", None) or notice, "sandbox": settings.sandbox_telegram,
            "billing_on": settings.billing_enabled, "status_code": status_code, **values,
        },
        status_code=status_code,
    )  # fmt: skip
    secure_headers(response, settings)
    if fresh_pre:
        response.set_cookie(
            PRE_COOKIE, fresh_pre, httponly=True, samesite="strict", secure=is_https(request),
            path="/app",
        )  # fmt: skip
    return response


def secure_headers(response: Response, settings: Settings) -> None:
    """Headers every dashboard response carries."""
    response.headers["Content-Security-Policy"] = csp_for(settings)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"


def is_https(request: Request) -> bool:
    """Whether cookies must be ``Secure``: the public URL (or the request) is https."""
    public = context_of(request).settings.public_url
    return (public or str(request.base_url)).startswith("https://")


def redirect(request: Request, url: str) -> Response:
    """A 303 after a form post (htmx requests get ``HX-Redirect``)."""
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def actor(user: Principal) -> str:
    """The audit-log actor for a dashboard user."""
    return f"user:{user.user_id}"

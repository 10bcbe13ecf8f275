"""Rendering dashboard pages: templates, the CSRF token, notices, security headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from api.dashboard.middleware import PRE_COOKIE, new_pre_token
from core.accounts import Principal
from core.context import AppContext
from core.permissions import can
from core.sessions import WebLogin
from core.settings import Settings

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))


def _as_utc(at: datetime | str) -> datetime | None:
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def ago(at: datetime, now: datetime | None = None) -> str:
    """``at`` relative to now, in words ("just now", "3 min ago", "in 2 h", "5 days ago")."""
    seconds = ((now or datetime.now(UTC)) - at).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 45:
        return "in a moment" if future else "just now"
    if seconds < 3600:
        text = f"{max(1, round(seconds / 60))} min"
    elif seconds < 86400:
        text = f"{round(seconds / 3600)} h"
    else:
        days = round(seconds / 86400)
        text = f"{days} day{'s' if days != 1 else ''}"
    return f"in {text}" if future else f"{text} ago"


def when(at: datetime | str | None, empty: str = "") -> Markup:
    """One timestamp format on every page: UTC date and time, plus the relative time.

    ``<time datetime="…" title="2026-12-02 03:18:05 UTC">2026-12-02 03:18 UTC · 3 min ago</time>``
    """
    moment = _as_utc(at) if at is not None and at != "" else None
    if moment is None:
        return escape(at if isinstance(at, str) and at else empty)
    exact = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    shown = f"{moment.strftime('%Y-%m-%d %H:%M UTC')} · {ago(moment)}"
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        moment.isoformat(), exact, shown
    )


# The activity feed in words: audit codes are for machines and exports, not for customers.
ACTIVITY = {
    "tenant.create": "Bot created",
    "telegram.token_set": "Telegram token changed",
    "channel.telegram.connected": "Telegram connected",
    "channel.discord.connected": "Discord connected",
    "channel.whatsapp.connected": "WhatsApp connected",
    "channel.telegram.disconnected": "Telegram disconnected",
    "channel.discord.disconnected": "Discord disconnected",
    "channel.whatsapp.disconnected": "WhatsApp disconnected",
    "provider_key.set": "Provider key saved",
    "model_mode.set": "Model mode changed",
    "model.set": "Model chosen",
    "message.test": "Test message sent",
    "sandbox.message": "Sandbox message sent",
    "billing.checkout_started": "Checkout started",
    "billing.plan_assigned": "Plan assigned",
    "billing.plan_changed": "Plan changed by billing",
    "billing.plan_change_requested": "Plan change requested",
    "reconfigure.bundle_changed": "Bundle changed to fit the plan",
    "reconfigure.failed": "Configuration change failed",
    "reconfigure.rolled_back": "Configuration change rolled back",
    "deploy.failed": "Deploy failed",
    "command.deploy": "Deploy requested",
    "command.pause": "Pause requested",
    "command.resume": "Resume requested",
    "command.restart": "Restart requested",
    "command.reset_memory": "Memory reset requested",
    "command.switch_bundle": "Bundle switch requested",
    "command.delete": "Deletion requested",
    "command.reconfigure": "Configuration change requested",
    "signal.force_restart": "Support restarted the bot",
    "signal.extend_grace_period": "Support extended the payment grace period",
    "signal.kill_switch": "Support stopped the bot (kill switch)",
    "signal.lift_kill_switch": "Support lifted the kill switch",
    "signal.add_note": "Support note",
}


def activity(code: str) -> str:
    """An audit code in words ("telegram.token_set" -> "Telegram token changed")."""
    if code in ACTIVITY:
        return ACTIVITY[code]
    words = code.replace(".", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:]


TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["activity"] = activity
# can(role, action): whether the role may do the action (core/permissions), to show a
# control only to those the route behind it will allow.
TEMPLATES.env.globals["can"] = can
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
    "reset": "Reset queued: conversations will start fresh.",
    "deleted": "Deletion queued. The bot and its data are being removed.",
    "signal": "Signal sent to the tenant workflow.",
    "2fa_required": "Your organization requires two-factor authentication: set it up below "
    "to continue.",
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
    full_page = not template.startswith("_")  # fragments never consume a page's outcome
    outcome = take_outcome(request) if full_page else None
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "user": login.principal if login else None, "csrf_token": csrf,
            "notice": values.pop("notice", None) or notice, "sandbox": settings.sandbox_telegram,
            "billing_on": settings.billing_enabled, "status_code": status_code,
            "outcome": outcome, **values,
        },
        status_code=status_code,
    )  # fmt: skip
    secure_headers(response, settings)
    if full_page and FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/app")
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


FLASH_COOKIE = "tcc_flash"


def _flash_mac(login: WebLogin, payload: bytes) -> str:
    key = f"tcc-flash-v1:{login.csrf_token}".encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()[:32]


def outcome_redirect(
    request: Request, url: str, section: str, message: str, *, error: bool = True
) -> Response:
    """Post/redirect/get for a form's outcome: 303 to ``url#{section}-outcome``, the outcome
    shown there (focusable, so the browser scrolls to it and moves the focus onto it).

    The message rides in a short-lived cookie bound to the session (HMAC with its CSRF
    secret), so Back never asks to resubmit a form and no link can put words on our page.
    """
    response = redirect(request, f"{url}#{section}-outcome")
    login = web_login(request)
    if login is not None:
        payload = json.dumps({"s": section, "m": message, "e": error}).encode()
        value = base64.urlsafe_b64encode(payload).decode() + "." + _flash_mac(login, payload)
        response.set_cookie(
            FLASH_COOKIE, value, max_age=120, httponly=True, samesite="strict",
            secure=is_https(request), path="/app",
        )  # fmt: skip
    return response


def take_outcome(request: Request) -> dict[str, Any] | None:
    """The outcome a redirect left for this page (``section``, ``message``, ``error``)."""
    raw, login = request.cookies.get(FLASH_COOKIE), web_login(request)
    if not raw or login is None or "." not in raw:
        return None
    encoded, mac = raw.rsplit(".", 1)
    try:
        payload = base64.urlsafe_b64decode(encoded.encode())
        if not hmac.compare_digest(_flash_mac(login, payload), mac):
            return None
        data = json.loads(payload)
        return {"section": str(data["s"]), "message": str(data["m"]), "error": bool(data["e"])}
    except (ValueError, KeyError, TypeError):
        return None


def redirect(request: Request, url: str) -> Response:
    """A 303 after a form post (htmx requests get ``HX-Redirect``)."""
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def actor(user: Principal) -> str:
    """The audit-log actor for a dashboard user."""
    return f"user:{user.user_id}"

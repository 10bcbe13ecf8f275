"""Sign-up, login and logout pages, and the list of the user's bots."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from api.auth import check_signup_rate, guarded_login
from api.auth_email import check_email_rate, confirm_reset, confirm_verification, request_reset
from api.dashboard.render import actor, context_of, is_https, page, redirect, web_login
from api.tenants.endpoints import my_bots
from core import account_email, accounts, sessions
from core.accounts import Principal
from core.db.models import AuditLog
from core.deployment_state import DeploymentState
from core.errors import TinyClawError, Unauthorized
from core.tenants import audit

router = APIRouter(prefix="/app", include_in_schema=False)


def web_user(request: Request) -> Principal:
    """The logged-in browser user; anonymous visitors are sent to the login page."""
    login = web_login(request)
    if login is None:
        raise Unauthorized("Log in to continue.", code="login_required")
    return login.principal


WebUser = Annotated[Principal, Depends(web_user)]
Email = Annotated[str, Form(max_length=320)]
Password = Annotated[str, Form(max_length=200)]
# Where to go after sign-up or login: only back to an invitation link (no open redirect).
NEXT_PREFIX = "/app/invitations/accept?token="
Next = Annotated[str, Form(max_length=1100)]
NextQuery = Annotated[str, Query(max_length=1100)]


def safe_next(value: str) -> str | None:
    """``value`` when it is an invitation link of ours; else None."""
    if value.startswith(NEXT_PREFIX) and all(
        c.isalnum() or c in "-_.=" for c in value[len(NEXT_PREFIX) :]
    ):
        return value
    return None


def _login_response(request: Request, token: str, to: str) -> Response:
    response = redirect(request, to)
    response.set_cookie(
        sessions.COOKIE_NAME, token, max_age=int(sessions.SESSION_TTL.total_seconds()),
        httponly=True, samesite="lax", secure=is_https(request), path="/",
    )  # fmt: skip
    return response


@router.get("")
async def home(request: Request, user: WebUser) -> Response:
    """The user's bots, or the wizard when there are none yet."""
    ctx = context_of(request)
    from api.dashboard.org_views import current_org

    org, role = current_org(request, user.user_id)
    bots = await my_bots(ctx, user.user_id, org.id)
    if not bots and not request.query_params.get("notice") and org.personal:
        return redirect(request, "/app/new")
    with ctx.db.system_session() as session:  # an accepted delete runs: say so at once
        asked = set(session.scalars(
            select(AuditLog.tenant_id).where(
                AuditLog.tenant_id.in_([b.id for b in bots]), AuditLog.action == "command.delete"
            )
        ))  # fmt: skip
    for bot in bots:
        if bot.id in asked and bot.state not in ("deleting", "deleted"):
            bot.state = DeploymentState.DELETING
    return page(request, "bots.html", bots=bots, org=org, org_role=role)


@router.get("/signup")
def signup_form(request: Request, next: NextQuery = "", email: NextQuery = "") -> Response:
    """The sign-up page."""
    return page(request, "signup.html", next=safe_next(next), email=email[:320])


@router.post("/signup")
def signup(request: Request, email: Email, password: Password, next: Next = "") -> Response:
    """Create an account and log in (rate-limited per address)."""
    ctx = context_of(request)
    try:
        check_signup_rate(request)
        with ctx.db.system_session() as session:
            user = accounts.sign_up(session, email, password)
            token = sessions.start_session(session, user.id)
            audit(session, tenant_id=None, actor=f"user:{user.id}", action="account.signup")
            audit(session, tenant_id=None, actor=f"user:{user.id}", action="session.start")
            welcome = account_email.verification_email(ctx.settings, user)
    except TinyClawError as exc:
        return page(
            request, "signup.html", exc.status_code, error=exc.message, email=email,
            error_code=exc.code, next=safe_next(next),
        )  # fmt: skip
    account_email.deliver(ctx, welcome)
    return _login_response(request, token, safe_next(next) or "/app/new?notice=signed_up")


@router.get("/login")
def login_form(request: Request, next: NextQuery = "", email: NextQuery = "") -> Response:
    """The login page."""
    if web_login(request) is not None:
        return redirect(request, safe_next(next) or "/app")
    return page(request, "login.html", next=safe_next(next), email=email[:320])


@router.post("/login")
async def login(request: Request, email: Email, password: Password, next: Next = "") -> Response:
    """Log in with email and password (backs off per address and per account)."""
    ctx = context_of(request)

    def attempt() -> str:
        with ctx.db.system_session() as session:
            user = accounts.authenticate_password(session, email, password)
            token = sessions.start_session(session, user.id)
            audit(session, tenant_id=None, actor=f"user:{user.id}", action="session.start")
            return token

    try:
        token = await guarded_login(request, email, attempt)
    except TinyClawError as exc:
        response = page(
            request, "login.html", exc.status_code, error=exc.message, email=email,
            next=safe_next(next),
        )  # fmt: skip
        if "retry_after" in exc.details:
            response.headers["Retry-After"] = str(exc.details["retry_after"])
        return response
    return _login_response(request, token, safe_next(next) or "/app")


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End this browser's session."""
    ctx = context_of(request)
    token = request.cookies.get(sessions.COOKIE_NAME, "")
    login = web_login(request)

    def end() -> None:
        with ctx.db.system_session() as session:
            if sessions.end_session(session, token) and login is not None:
                audit(session, tenant_id=None, actor=actor(login.principal), action="session.end")

    await asyncio.to_thread(end)
    response = redirect(request, "/app/login?notice=logged_out")
    response.delete_cookie(sessions.COOKIE_NAME, path="/")
    return response


@router.get("/forgot-password")
def forgot_form(request: Request) -> Response:
    """Ask for a password reset link."""
    return page(request, "forgot.html")


@router.post("/forgot-password")
async def forgot(request: Request, email: Email) -> Response:
    """Email a reset link (the page says the same whether the account exists)."""
    try:
        check_email_rate(request, email)
        await asyncio.to_thread(request_reset, context_of(request), email)
    except TinyClawError as exc:
        return page(request, "forgot.html", exc.status_code, error=exc.message, email=email)
    return page(request, "forgot.html", sent=True)


@router.get("/reset-password")
def reset_form(request: Request, token: Annotated[str, Query(max_length=1000)] = "") -> Response:
    """The new-password form of a reset link."""
    return page(request, "reset.html", token=token)


@router.post("/reset-password")
async def reset(
    request: Request, password: Password, token: Annotated[str, Form(max_length=1000)] = ""
) -> Response:
    """Set the new password; every login of the account ends, so log in again."""
    try:
        await asyncio.to_thread(confirm_reset, context_of(request), token, password)
    except TinyClawError as exc:
        return page(request, "reset.html", exc.status_code, error=exc.message, token=token)
    response = redirect(request, "/app/login?notice=password_reset")
    response.delete_cookie(sessions.COOKIE_NAME, path="/")
    return response


@router.get("/verify-email")
async def verify(request: Request, token: Annotated[str, Query(max_length=1000)] = "") -> Response:
    """Confirm the email address of the account from the emailed link."""
    try:
        out = await asyncio.to_thread(confirm_verification, context_of(request), token)
    except TinyClawError as exc:
        return page(request, "error.html", exc.status_code, message=exc.message)
    return page(request, "verified.html", email=out.email)

"""Sign-up, login and logout pages, and the list of the user's bots."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import check_signup_rate, guarded_login
from api.auth_email import check_email_rate, confirm_reset, confirm_verification, request_reset
from api.dashboard.render import actor, context_of, is_https, page, redirect, web_login
from api.tenants.endpoints import my_bots
from api.twofactor import check_second_factor
from core import account_email, accounts, legal, links, sessions, sso, twofactor
from core.accounts import Principal
from core.context import AppContext
from core.db.models import AuditLog, User
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
LOGIN_2FA = "login-2fa"
PENDING_LOGIN_TTL_S = 300
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


def login_response(request: Request, token: str, to: str) -> Response:
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
    with ctx.db.system_session() as session:
        step = pending_step(session, ctx, user.user_id)
    if step != "/app":
        return redirect(request, step)
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
    return page(
        request, "signup.html", next=safe_next(next), email=email[:320],
        terms_version=context_of(request).settings.legal_version,
    )  # fmt: skip


@router.post("/signup")
def signup(
    request: Request,
    email: Email,
    password: Password,
    next: Next = "",
    accept_terms: Annotated[str, Form(max_length=10)] = "",
    terms_version: Annotated[str | None, Form(max_length=64)] = None,
) -> Response:
    """Create an account and log in (rate-limited per address; the terms must be accepted)."""
    ctx = context_of(request)
    try:
        check_signup_rate(request)
        with ctx.db.system_session() as session:
            user = accounts.sign_up(session, email, password)
            version = legal.accept(
                session, ctx.settings, user.id, accept_terms == "yes", terms_version
            )
            token = sessions.start_session(session, user.id)
            audit(session, tenant_id=None, actor=f"user:{user.id}", action="account.signup",
                  terms_version=version)  # fmt: skip
            audit(session, tenant_id=None, actor=f"user:{user.id}", action="session.start")
            welcome = account_email.verification_email(ctx.settings, user)
    except TinyClawError as exc:
        return page(
            request, "signup.html", exc.status_code, error=exc.message, email=email,
            error_code=exc.code, next=safe_next(next), terms_version=ctx.settings.legal_version,
        )  # fmt: skip
    account_email.deliver(ctx, welcome)
    return login_response(request, token, safe_next(next) or "/app/new?notice=signed_up")


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

    def attempt() -> tuple[str, str | None]:
        with ctx.db.system_session() as session:
            user = accounts.authenticate_password(session, email, password)
            sso.check_password_login(session, user)
            if twofactor.is_enabled(user):  # the password is right: now the second factor
                return "", pending_login_token(ctx, user)
            return _start(session, ctx, user.id), None

    try:
        token, pending = await guarded_login(request, email, attempt)
    except TinyClawError as exc:
        return _login_error(request, exc, email=email, next=safe_next(next))
    if pending is not None:
        return page(request, "login_totp.html", pending=pending, next=safe_next(next))
    return login_response(request, token, after_login(ctx, token, safe_next(next)))


def pending_login_token(ctx: AppContext, user: User) -> str:
    """A five-minute proof that this user gave the right password (the code comes next)."""
    state = links.fingerprint("login-2fa", user.password_hash, str(user.totp_enabled_at))
    return links.make_link_token(
        links.link_key(ctx.settings), LOGIN_2FA, user.id, state, PENDING_LOGIN_TTL_S
    )


def _start(session: Session, ctx: AppContext, user_id: str) -> str:
    token = sessions.start_session(session, user_id)
    audit(session, tenant_id=None, actor=f"user:{user_id}", action="session.start")
    return token


def after_login(ctx: AppContext, token: str, next: str | None = None) -> str:
    """Where a fresh login lands: the new legal documents first, when there are any, then
    two-factor set-up when an organization requires it, then ``next`` or the bots."""
    with ctx.db.system_session() as session:
        login = sessions.resolve_session(session, token)
        step = pending_step(session, ctx, login.principal.user_id) if login else "/app"
    return next if step == "/app" and next else step


def pending_step(session: Session, ctx: AppContext, user_id: str) -> str:
    """The page a logged-in user must see before their bots ("/app" when none)."""
    if legal.needs_acceptance(session, ctx.settings, user_id):
        return "/app/legal/accept"
    user = session.get(User, user_id)
    if user is not None and sso.must_enrol_2fa(session, user) is not None:
        return "/app/account?notice=2fa_required#twofactor"
    return "/app"


def _login_error(request: Request, exc: TinyClawError, **values: object) -> Response:
    template = "login_totp.html" if "pending" in values else "login.html"
    response = page(request, template, exc.status_code, error=exc.message, **values)
    if "retry_after" in exc.details:
        response.headers["Retry-After"] = str(exc.details["retry_after"])
    return response


@router.post("/login/2fa")
def login_second_factor(
    request: Request,
    pending: Annotated[str, Form(max_length=1000)],
    code: Annotated[str, Form(max_length=32)] = "",
    next: Next = "",
) -> Response:
    """The second step of a login with two-factor on: a code from the app or a recovery code."""
    ctx = context_of(request)
    try:
        user_id, state = links.read_link_token(links.link_key(ctx.settings), LOGIN_2FA, pending)
        with ctx.db.system_session() as session:
            user = session.get(User, user_id)
            expected = user and links.fingerprint(
                "login-2fa", user.password_hash, str(user.totp_enabled_at)
            )
            if user is None or state != expected:
                raise Unauthorized("This login has expired: log in again.", code="login_expired")
            check_second_factor(request, ctx, session, user, code)
            token = _start(session, ctx, user.id)
    except TinyClawError as exc:
        if exc.code in ("link_invalid", "link_expired", "login_expired"):
            return _login_error(request, Unauthorized("This login has expired: log in again."))
        return _login_error(request, exc, pending=pending, next=safe_next(next))
    return login_response(request, token, after_login(ctx, token, safe_next(next)))


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

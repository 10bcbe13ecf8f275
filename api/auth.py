"""Sign-up, login and personal API tokens (named, scoped, expiring)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Path, Request, status
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, CurrentUser
from api.pagination import Page
from api.schemas import UtcDatetime
from api.twofactor import check_second_factor
from core import account_email, accounts, legal, sso, twofactor
from core.db.models import User
from core.errors import Forbidden, NotFound, RateLimited, Unauthorized
from core.ratelimit import LoginThrottle, SlidingWindow
from core.tenants import audit

router = APIRouter(prefix="/auth", tags=["auth"])
Scope = Literal["read", "write", "admin"]
T = TypeVar("T")


class SignUpIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=200)
    name: str | None = Field(default=None, max_length=200)
    accept_terms: bool = Field(
        default=False,
        description="must be true: you accept the terms, privacy policy and DPA (GET /legal)",
    )
    terms_version: str | None = Field(
        default=None, max_length=64, description="the version you showed (refused if outdated)"
    )


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=200)
    totp_code: str | None = Field(
        default=None, max_length=32, description="with two-factor on: a code or recovery code"
    )


class TokenOut(BaseModel):
    id: str
    user_id: str
    email: str
    token: str = Field(description="shown once: store it now")
    name: str
    scopes: list[Scope]
    expires_at: UtcDatetime | None
    terms_to_accept: str | None = Field(
        default=None, description="a newer legal version to accept (POST /auth/terms)"
    )


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(default=["read", "write"], min_length=1, max_length=3)
    expires_in_days: int | None = Field(
        default=90, ge=1, le=3650, description="null: never (if the installation allows it)"
    )


class TokenInfo(BaseModel):
    id: str
    name: str
    last4: str
    scopes: list[Scope]
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None
    expires_at: UtcDatetime | None

    @field_validator("scopes", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return value.split() if isinstance(value, str) else value


def client_address(request: Request) -> str:
    """The peer address as the server saw it (proxy headers only from trusted proxies)."""
    return request.client.host if request.client else "unknown"


def login_throttle(request: Request) -> LoginThrottle:
    """This app's login back-off (one per app, so tests and replicas start clean)."""
    throttle: LoginThrottle = request.app.state.login_throttle
    return throttle


def check_signup_rate(request: Request) -> None:
    """A few sign-ups an hour per client address."""
    limit: SlidingWindow = request.app.state.signup_limit
    wait = limit.hit(client_address(request))
    if wait is not None:
        raise RateLimited(
            f"Too many sign-ups from your address. Try again in {int(wait) + 1} seconds.",
            retry_after=int(wait) + 1,
        )


async def guarded_login(request: Request, email: str, attempt: Callable[[], T]) -> T:
    """Run ``attempt`` (a password check) under the per-address and per-account back-off."""
    throttle, ip = login_throttle(request), client_address(request)
    account = email.strip().lower()
    wait = throttle.retry_after(ip, account)
    if wait is not None:
        raise RateLimited(
            f"Too many login attempts. Try again in {int(wait) + 1} seconds.",
            retry_after=int(wait) + 1,
        )
    # Failures from other addresses only slow the account down; they never lock it.
    await asyncio.sleep(throttle.delay(account))
    try:
        result = await run_in_threadpool(attempt)
    except Unauthorized:
        throttle.failed(ip, account)
        raise
    throttle.succeeded(ip, account)
    return result


def _token_out(user: User, row: object, token: str) -> TokenOut:
    info = TokenInfo.model_validate(row, from_attributes=True)
    return TokenOut(
        id=info.id, user_id=user.id, email=user.email, token=token, name=info.name,
        scopes=info.scopes, expires_at=info.expires_at,
    )  # fmt: skip


@router.post("/signup", status_code=status.HTTP_201_CREATED)
def sign_up(body: SignUpIn, request: Request, ctx: ContextDep) -> TokenOut:
    """Create an account and get a first personal API token (rate-limited per address)."""
    check_signup_rate(request)
    ttl = timedelta(days=ctx.settings.login_token_ttl_days)
    with ctx.db.system_session() as session:
        user = accounts.sign_up(session, body.email, body.password, body.name)
        version = legal.accept(
            session, ctx.settings, user.id, body.accept_terms, body.terms_version
        )
        row, token = accounts.issue_login_token(session, user, ttl)
        audit(session, tenant_id=None, actor=f"user:{user.id}", action="account.signup",
              terms_version=version)  # fmt: skip
        out = _token_out(user, row, token)
        welcome = account_email.verification_email(ctx.settings, user)
    account_email.deliver(ctx, welcome)
    return out


@router.post("/login")
async def login(body: LoginIn, request: Request, ctx: ContextDep) -> TokenOut:
    """Exchange email and password (and, with two-factor on, a code) for an expiring token
    (older login tokens are retired). ``terms_to_accept`` names newer legal documents."""
    ttl = timedelta(days=ctx.settings.login_token_ttl_days)

    def attempt() -> TokenOut:
        with ctx.db.system_session() as session:
            user = accounts.authenticate_password(session, body.email, body.password)
            sso.check_password_login(session, user)
            if twofactor.is_enabled(user):
                check_second_factor(request, ctx, session, user, body.totp_code)
            sso.refuse_without_2fa(session, user)
            row, token = accounts.issue_login_token(session, user, ttl)
            audit(session, tenant_id=None, actor=f"user:{user.id}", action="account.login")
            out = _token_out(user, row, token)
            if legal.needs_acceptance(session, ctx.settings, user.id):
                out.terms_to_accept = ctx.settings.legal_version
            return out

    return await guarded_login(request, body.email, attempt)


@router.get("/me")
def me(user: CurrentUser) -> dict[str, object]:
    """Who the credential belongs to, and its scopes."""
    return {
        "user_id": user.user_id,
        "email": user.email,
        "is_platform_admin": user.is_platform_admin,
        "scopes": sorted(user.scopes),
    }


def create_api_token(ctx: ContextDep, user: accounts.Principal, body: TokenIn) -> TokenOut:
    """Shared by the API and the dashboard: a named, scoped, expiring token."""
    if "admin" in body.scopes and not user.is_platform_admin:
        raise Forbidden("Only platform admins can create 'admin' tokens.", code="admin_only")
    if not set(body.scopes) <= user.scopes:
        raise Forbidden("A token cannot have more scopes than the credential that creates it.")
    max_days = ctx.settings.api_token_max_ttl_days
    days = body.expires_in_days if body.expires_in_days is not None else max_days
    if days > max_days:
        raise Forbidden(f"Tokens expire after {max_days} days at most here.", code="ttl_too_long")
    with ctx.db.system_session() as session:
        db_user = session.get(User, user.user_id)
        if db_user is None:
            raise Unauthorized("This account no longer exists.")
        row, token = accounts.issue_api_token(
            session, user.user_id, body.name, scopes=body.scopes, ttl=timedelta(days=days)
        )
        audit(
            session, tenant_id=None, actor=f"user:{user.user_id}", action="token.create",
            name=body.name, scopes=" ".join(body.scopes),
        )  # fmt: skip
        return _token_out(db_user, row, token)


def list_api_tokens(ctx: ContextDep, user: accounts.Principal) -> list[TokenInfo]:
    """The user's live tokens."""
    with ctx.db.system_session() as session:
        return [
            TokenInfo.model_validate(r, from_attributes=True)
            for r in accounts.live_tokens(session, user.user_id)
        ]


def revoke_api_token(ctx: ContextDep, user: accounts.Principal, token_id: str) -> None:
    """Revoke one of the user's tokens (404 when it is not theirs)."""
    with ctx.db.system_session() as session:
        if not accounts.revoke_api_token(session, user.user_id, token_id):
            raise NotFound("No such token.", code="token_not_found")
        audit(session, tenant_id=None, actor=f"user:{user.user_id}", action="token.revoke")


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
def create_token(body: TokenIn, user: CurrentUser, ctx: ContextDep) -> TokenOut:
    """Create a named personal API token with scopes and an expiry (shown once)."""
    return create_api_token(ctx, user, body)


@router.get("/tokens")
def list_tokens(user: CurrentUser, ctx: ContextDep, page: Page) -> list[TokenInfo]:
    """Your live tokens, newest first (the last four characters only; paginated)."""
    return page.slice(
        list_api_tokens(ctx, user), key=lambda t: [t.created_at.isoformat(), t.id], descending=True
    )


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(
    token_id: Annotated[str, Path(max_length=64)], user: CurrentUser, ctx: ContextDep
) -> None:
    """Revoke one of your tokens."""
    revoke_api_token(ctx, user, token_id)

"""Sign-up, login and personal API tokens."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field

from api.deps import ContextDep, CurrentUser
from core import accounts
from core.db.models import ApiToken
from core.errors import NotFound, RateLimited
from core.ratelimit import SlidingWindow
from core.tenants import audit

router = APIRouter(prefix="/auth", tags=["auth"])
LOGIN_LIMIT = SlidingWindow(limit=5, window_s=60)


class SignUpIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=200)
    name: str | None = Field(default=None, max_length=200)


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=200)


class TokenOut(BaseModel):
    user_id: str
    email: str
    token: str = Field(description="shown once: store it now")


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class TokenInfo(BaseModel):
    id: str
    name: str
    last4: str
    created_at: datetime
    last_used_at: datetime | None


def check_login_rate(request: Request, email: str) -> None:
    """Five attempts a minute per email and per client address."""
    client = request.client.host if request.client else "unknown"
    for key in (f"email:{email.strip().lower()}", f"ip:{client}"):
        wait = LOGIN_LIMIT.hit(key)
        if wait is not None:
            raise RateLimited(
                f"Too many login attempts. Try again in {int(wait) + 1} seconds.",
                retry_after=int(wait) + 1,
            )


@router.post("/signup", status_code=status.HTTP_201_CREATED)
def sign_up(body: SignUpIn, ctx: ContextDep) -> TokenOut:
    """Create an account and get a first personal API token."""
    with ctx.db.system_session() as session:
        user = accounts.sign_up(session, body.email, body.password, body.name)
        _, token = accounts.issue_api_token(session, user.id, "default")
        audit(session, tenant_id=None, actor=f"user:{user.id}", action="account.signup")
        return TokenOut(user_id=user.id, email=user.email, token=token)


@router.post("/login")
def login(body: LoginIn, request: Request, ctx: ContextDep) -> TokenOut:
    """Exchange email and password for a new personal API token (rate-limited)."""
    check_login_rate(request, body.email)
    with ctx.db.system_session() as session:
        user = accounts.authenticate_password(session, body.email, body.password)
        _, token = accounts.issue_api_token(session, user.id, "login")
        audit(session, tenant_id=None, actor=f"user:{user.id}", action="account.login")
        return TokenOut(user_id=user.id, email=user.email, token=token)


@router.get("/me")
def me(user: CurrentUser) -> dict[str, object]:
    """Who the token belongs to."""
    return {
        "user_id": user.user_id,
        "email": user.email,
        "is_platform_admin": user.is_platform_admin,
    }


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
def create_token(body: TokenIn, user: CurrentUser, ctx: ContextDep) -> TokenOut:
    """Create another personal API token."""
    with ctx.db.system_session() as session:
        _, token = accounts.issue_api_token(session, user.user_id, body.name)
        audit(
            session,
            tenant_id=None,
            actor=f"user:{user.user_id}",
            action="token.create",
            name=body.name,
        )
    return TokenOut(user_id=user.user_id, email=user.email, token=token)


@router.get("/tokens")
def list_tokens(user: CurrentUser, ctx: ContextDep) -> list[TokenInfo]:
    """Your live tokens (the last four characters only)."""
    from sqlalchemy import select

    with ctx.db.system_session() as session:
        rows = session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.user_id, ApiToken.revoked_at.is_(None))
        ).all()
        return [TokenInfo.model_validate(r, from_attributes=True) for r in rows]


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: str, user: CurrentUser, ctx: ContextDep) -> None:
    """Revoke one of your tokens."""
    with ctx.db.system_session() as session:
        if not accounts.revoke_api_token(session, user.user_id, token_id):
            raise NotFound("No such token.")
        audit(session, tenant_id=None, actor=f"user:{user.user_id}", action="token.revoke")

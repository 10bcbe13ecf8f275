"""Password reset and email verification over the API (the links lead to the dashboard)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.auth import client_address
from api.deps import ContextDep, CurrentUser
from core import account_email
from core.account_email import deliver
from core.context import AppContext
from core.db.models import User
from core.errors import RateLimited, Unauthorized
from core.ratelimit import SlidingWindow
from core.tenants import audit

router = APIRouter(prefix="/auth", tags=["auth"])


class ResetRequestIn(BaseModel):
    email: str = Field(max_length=320)


class ResetConfirmIn(BaseModel):
    token: str = Field(min_length=1, max_length=1000)
    password: str = Field(max_length=200)


class VerifyConfirmIn(BaseModel):
    token: str = Field(min_length=1, max_length=1000)


class AcceptedMessage(BaseModel):
    status: str


class VerifiedOut(BaseModel):
    email: str
    email_verified: bool


def check_email_rate(request: Request, email: str) -> None:
    """A few emails an hour per address and per recipient (no mail bombing)."""
    limit: SlidingWindow = request.app.state.email_limit
    for key in (f"ip:{client_address(request)}", f"to:{email.strip().lower()}"):
        wait = limit.hit(key)
        if wait is not None:
            raise RateLimited(
                f"Too many emails asked for. Try again in {int(wait) + 1} seconds.",
                retry_after=int(wait) + 1,
            )


def request_reset(ctx: AppContext, email: str) -> None:
    """Build and send the reset email, if the account exists."""
    with ctx.db.system_session() as session:
        message = account_email.password_reset_email(session, ctx.settings, email)
    deliver(ctx, message)


def confirm_reset(ctx: AppContext, token: str, password: str) -> None:
    """Apply a reset link."""
    with ctx.db.system_session() as session:
        user = account_email.reset_password(session, ctx.settings, token, password)
        audit(session, tenant_id=None, actor=f"user:{user.id}", action="account.password_reset")


def send_verification(ctx: AppContext, user_id: str) -> None:
    """Send the verification email to the user's address (nothing if already verified)."""
    with ctx.db.system_session() as session:
        user = session.get(User, user_id)
        if user is None:
            raise Unauthorized("This account no longer exists.")
        message = account_email.verification_email(ctx.settings, user)
    deliver(ctx, message)


def confirm_verification(ctx: AppContext, token: str) -> VerifiedOut:
    """Apply a verification link."""
    with ctx.db.system_session() as session:
        user = account_email.confirm_email(session, ctx.settings, token)
        audit(session, tenant_id=None, actor=f"user:{user.id}", action="account.email_verified")
        return VerifiedOut(email=user.email, email_verified=True)


@router.post("/password-reset", status_code=status.HTTP_202_ACCEPTED)
async def password_reset(
    body: ResetRequestIn, request: Request, ctx: ContextDep
) -> AcceptedMessage:
    """Email a single-use reset link (the answer is the same whether the account exists)."""
    check_email_rate(request, body.email)
    await run_in_threadpool(request_reset, ctx, body.email)
    return AcceptedMessage(status="If an account has this email, a reset link is on its way.")


@router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def password_reset_confirm(body: ResetConfirmIn, ctx: ContextDep) -> None:
    """Set a new password with the emailed link; all sessions and login tokens end."""
    await run_in_threadpool(confirm_reset, ctx, body.token, body.password)


@router.post("/verify-email", status_code=status.HTTP_202_ACCEPTED)
async def verify_email(request: Request, user: CurrentUser, ctx: ContextDep) -> AcceptedMessage:
    """Email a verification link to your address again."""
    check_email_rate(request, user.email)
    await run_in_threadpool(send_verification, ctx, user.user_id)
    return AcceptedMessage(status="A verification link is on its way (unless already verified).")


@router.post("/verify-email/confirm")
async def verify_email_confirm(body: VerifyConfirmIn, ctx: ContextDep) -> VerifiedOut:
    """Confirm your email address with the emailed link."""
    return await run_in_threadpool(confirm_verification, ctx, body.token)

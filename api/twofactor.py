"""Two-factor authentication over the API: enrol, confirm, status, disable; and the
limited code check that the login routes (API and dashboard) share."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.deps import ContextDep, CurrentUser
from core import twofactor
from core.context import AppContext
from core.db.models import User
from core.errors import Conflict, RateLimited, Unauthorized
from core.ratelimit import FailureLog
from core.tenants import audit

router = APIRouter(prefix="/auth/2fa", tags=["auth"])
CODE_WINDOW_S = 600.0


class CodeIn(BaseModel):
    code: str = Field(min_length=6, max_length=32, description="a 6-digit code or a recovery code")


class EnrolOut(BaseModel):
    secret: str = Field(description="shown once: type it into the app if you cannot scan")
    otpauth_uri: str = Field(description="shown once: the QR code's content")
    qr_svg: str = Field(description="the QR code as an inline SVG")


class ConfirmOut(BaseModel):
    enabled: bool
    recovery_codes: list[str] = Field(description="shown once: each works once, keep them safe")


class StatusOut(BaseModel):
    enabled: bool
    recovery_codes_left: int


def code_failures(request: Request) -> FailureLog:
    """This app's log of wrong second-factor codes per account (shared through Redis when
    the limits are)."""
    log: FailureLog = request.app.state.totp_failures
    return log


def _limited(request: Request, ctx: AppContext, user_id: str) -> tuple[FailureLog, str]:
    """429 while the account has had too many wrong codes lately."""
    failures, key = code_failures(request), f"totp:{user_id}"
    count, wait = failures.count(key)
    if count >= ctx.settings.totp_attempts_per_10_min:
        raise RateLimited(
            f"Too many wrong codes. Try again in {int(wait) + 1} seconds.",
            retry_after=int(wait) + 1,
        )
    return failures, key


def check_second_factor(
    request: Request, ctx: AppContext, session: Session, user: User, code: str | None
) -> str:
    """Check the code of an account with two-factor on, under the per-account attempt limit.

    Missing code: 401 ``totp_required``; wrong or replayed: 401; too many wrong: 429.
    """
    if not code:
        raise Unauthorized(
            "This account uses two-factor authentication: enter the 6-digit code from your "
            "authenticator app (or a recovery code).",
            code="totp_required",
        )
    failures, key = _limited(request, ctx, user.id)
    try:
        kind = twofactor.verify(session, ctx.secrets, user, code)
    except Unauthorized:
        failures.add(key)
        raise
    if kind == "recovery":
        audit(session, tenant_id=None, actor=f"user:{user.id}", action="2fa.recovery_code_used")
    return kind


def _user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None or user.deleted_at is not None:
        raise Unauthorized("This account no longer exists.")
    return user


def enrol(ctx: AppContext, user_id: str) -> EnrolOut:
    """Shared by the API and the dashboard: start enrolment."""
    with ctx.db.system_session() as session:
        e = twofactor.begin(session, ctx.secrets, _user(session, user_id))
        return EnrolOut(secret=e.secret, otpauth_uri=e.otpauth_uri, qr_svg=e.qr_svg)


def confirm_enrolment(request: Request, ctx: AppContext, user_id: str, code: str) -> list[str]:
    """Shared by the API and the dashboard: the first code turns two-factor on."""
    failures, key = _limited(request, ctx, user_id)
    with ctx.db.system_session() as session:
        try:
            codes = twofactor.confirm(session, ctx.secrets, _user(session, user_id), code)
        except Unauthorized:
            failures.add(key)
            raise
        audit(session, tenant_id=None, actor=f"user:{user_id}", action="2fa.enabled")
        return codes


def turn_off(request: Request, ctx: AppContext, user_id: str, code: str) -> None:
    """Shared by the API and the dashboard: a valid code turns two-factor off."""
    with ctx.db.system_session() as session:
        user = _user(session, user_id)
        if not twofactor.is_enabled(user):
            raise Conflict("Two-factor authentication is already off.", code="totp_off")
        check_second_factor(request, ctx, session, user, code)
        twofactor.erase(session, ctx.secrets, user)
        audit(session, tenant_id=None, actor=f"user:{user_id}", action="2fa.disabled")


def state(ctx: AppContext, user_id: str) -> StatusOut:
    """Whether two-factor is on, and how many recovery codes are left."""
    with ctx.db.system_session() as session:
        user = _user(session, user_id)
        return StatusOut(
            enabled=twofactor.is_enabled(user),
            recovery_codes_left=twofactor.recovery_codes_left(session, user_id),
        )


@router.get("")
def get_status(user: CurrentUser, ctx: ContextDep) -> StatusOut:
    """Whether two-factor authentication is on for your account."""
    return state(ctx, user.user_id)


@router.post("/enrol")
def start_enrolment(user: CurrentUser, ctx: ContextDep) -> EnrolOut:
    """Start two-factor set-up: a new secret and its QR code (confirm with a code next)."""
    return enrol(ctx, user.user_id)


@router.post("/confirm")
def confirm(body: CodeIn, request: Request, user: CurrentUser, ctx: ContextDep) -> ConfirmOut:
    """Turn two-factor on with a code from the app; answers the recovery codes once."""
    codes = confirm_enrolment(request, ctx, user.user_id, body.code)
    return ConfirmOut(enabled=True, recovery_codes=codes)


@router.post("/disable", status_code=status.HTTP_204_NO_CONTENT)
def disable(body: CodeIn, request: Request, user: CurrentUser, ctx: ContextDep) -> None:
    """Turn two-factor off (needs a current code or a recovery code)."""
    turn_off(request, ctx, user.user_id, body.code)

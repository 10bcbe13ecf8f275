"""The account page (two-factor set-up, data download, account deletion) and the legal
pages (public) with the re-acceptance step after the documents change."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api import legal as legal_api
from api import twofactor as tf
from api.account import DeleteAccountIn, delete_account, export_response
from api.dashboard.auth_views import WebUser
from api.dashboard.render import context_of, page, redirect
from core import legal, sessions
from core.accounts import Principal
from core.errors import TinyClawError

router = APIRouter(prefix="/app", include_in_schema=False)
Code = Annotated[str, Form(max_length=32)]


def _account(request: Request, user: Principal, status_code: int = 200, **extra: Any) -> Response:
    status = tf.state(context_of(request), user.user_id)
    return page(request, "account.html", status_code, twofactor=status, **extra)


@router.get("/account")
def account_page(request: Request, user: WebUser) -> Response:
    """Security (two-factor), your data, and account deletion."""
    return _account(request, user)


@router.post("/account/2fa/enrol")
def enrol(request: Request, user: WebUser) -> Response:
    """Start two-factor set-up: the QR code and the secret, shown once."""
    try:
        made = tf.enrol(context_of(request), user.user_id)
    except TinyClawError as exc:
        return _account(request, user, exc.status_code, error=exc.message)
    return _account(request, user, enrolment=made)


@router.post("/account/2fa/confirm")
def confirm(request: Request, user: WebUser, code: Code = "") -> Response:
    """Confirm the set-up with a code; the recovery codes are shown once."""
    try:
        codes = tf.confirm_enrolment(request, context_of(request), user.user_id, code)
    except TinyClawError as exc:
        return _account(request, user, exc.status_code, error=exc.message)
    return _account(request, user, recovery_codes=codes)


@router.post("/account/2fa/disable")
def disable(request: Request, user: WebUser, code: Code = "") -> Response:
    """Turn two-factor off with a current code or a recovery code."""
    try:
        tf.turn_off(request, context_of(request), user.user_id, code)
    except TinyClawError as exc:
        return _account(request, user, exc.status_code, error=exc.message)
    return _account(request, user, notice="Two-factor authentication is off.")


@router.get("/account/export")
async def export(request: Request, user: WebUser, format: str = "zip") -> Response:
    """Download all your data (zip, or json)."""
    fmt = "json" if format == "json" else "zip"
    return await export_response(context_of(request), user.user_id, fmt)


@router.post("/account/delete")
async def delete(
    request: Request,
    user: WebUser,
    confirm_email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    code: Code = "",
) -> Response:
    """Delete the account after the user typed their email and password (and a code)."""
    body = DeleteAccountIn(confirm_email=confirm_email, password=password, totp_code=code or None)
    try:
        out = await delete_account(request, context_of(request), user.user_id, body)
    except TinyClawError as exc:
        return _account(request, user, exc.status_code, error=exc.message, delete_error=True)
    response = page(request, "account_deleted.html", deleted=out)
    response.delete_cookie(sessions.COOKIE_NAME, path="/")
    return response


@router.get("/legal/accept")
def accept_form(request: Request, user: WebUser) -> Response:
    """Ask a logged-in user to accept the documents in force."""
    return page(request, "legal_accept.html", version=context_of(request).settings.legal_version)


@router.post("/legal/accept")
def accept(
    request: Request,
    user: WebUser,
    accept_terms: Annotated[str, Form(max_length=10)] = "",
    version: Annotated[str | None, Form(max_length=64)] = None,
) -> Response:
    """Record the acceptance and go on to the bots."""
    ctx = context_of(request)
    try:
        legal_api.record(ctx, user.user_id, accept_terms == "yes", version)
    except TinyClawError as exc:
        return page(
            request, "legal_accept.html", exc.status_code, error=exc.message,
            version=ctx.settings.legal_version,
        )  # fmt: skip
    return redirect(request, "/app")


@router.get("/legal/{name}")
def document(request: Request, name: str) -> Response:
    """A legal document (public: read it before signing up)."""
    settings = context_of(request).settings
    body = legal_api.render_document(settings, name)
    return page(
        request, "legal.html", title=legal.DOCUMENTS[name], body=body, doc=name,
        version=settings.legal_version, documents=legal.DOCUMENTS,
    )  # fmt: skip

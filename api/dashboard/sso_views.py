"""Logging in through an organization's identity provider (OpenID Connect, code + PKCE).

``/app/sso/start?email=`` finds the organization serving the email's domain and sends the
browser to its provider; ``/app/sso/callback`` checks the answer and starts a dashboard
session. The flow's secrets are not in the cookie: it holds a signed random value that is
the ``state`` and from which the nonce and the PKCE verifier are derived with our key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.dashboard.auth_views import after_login, login_response
from api.dashboard.render import context_of, is_https, page, redirect
from core import links, oidc, sessions, sso
from core.context import AppContext
from core.errors import InvalidInput, TinyClawError, Unauthorized
from core.tenants import audit

router = APIRouter(prefix="/app/sso", include_in_schema=False)
COOKIE = "tcc_sso"
PURPOSE = "sso-login"
FLOW_TTL_S = 600


def _derive(key: bytes, label: str, nonce: str) -> str:
    digest = hmac.new(key, f"{label}|{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _redirect_uri(request: Request, ctx: AppContext) -> str:
    base = (ctx.settings.public_url or str(request.base_url)).rstrip("/")
    return f"{base}/app/sso/callback"


def _failed(request: Request, exc: TinyClawError) -> Response:
    response = page(request, "login.html", exc.status_code, error=exc.message, sso=True)
    response.delete_cookie(COOKIE, path="/app/sso")
    return response


@router.get("/start")
async def start(request: Request, email: Annotated[str, Query(max_length=320)] = "") -> Response:
    """Send the browser to the identity provider of the email's organization."""
    ctx = context_of(request)
    try:
        with ctx.db.system_session() as session:
            org, row = sso.provider_for_email(session, email)
            org_id, issuer, client_id = org.id, row.issuer, row.client_id
        provider = await oidc.discover(ctx.settings.sso_egress_guard(), issuer)
    except TinyClawError as exc:
        return _failed(request, exc)
    key, state = links.link_key(ctx.settings), secrets.token_urlsafe(24)
    url = oidc.authorization_url(
        provider, client_id, _redirect_uri(request, ctx), state,
        nonce=_derive(key, "nonce", state), verifier=_derive(key, "pkce", state),
    )  # fmt: skip
    response = redirect(request, url)
    response.set_cookie(
        COOKIE, links.make_link_token(key, PURPOSE, org_id, state, FLOW_TTL_S),
        max_age=FLOW_TTL_S, httponly=True, samesite="lax", secure=is_https(request),
        path="/app/sso",
    )  # fmt: skip
    return response


@router.get("/callback")
async def callback(
    request: Request,
    code: Annotated[str, Query(max_length=2000)] = "",
    state: Annotated[str, Query(max_length=200)] = "",
    error: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """The provider's answer: check it, then log in (or create the account just in time)."""
    ctx = context_of(request)
    key = links.link_key(ctx.settings)
    try:
        if error:
            raise Unauthorized("The identity provider did not log you in.", code="sso_denied")
        try:
            org_id, expected = links.read_link_token(key, PURPOSE, request.cookies.get(COOKIE, ""))
        except InvalidInput:
            raise Unauthorized("This login has expired: start again.", code="sso_expired") from None
        if not code or not hmac.compare_digest(state, expected):
            raise Unauthorized("This login has expired: start again.", code="sso_expired")
        with ctx.db.system_session() as session:
            row, _ = sso.config_of(session, org_id)
            if row is None:
                raise Unauthorized("Single sign-on is off for this organization.")
            issuer, client_id, ref = row.issuer, row.client_id, row.client_secret_ref
        guard = ctx.settings.sso_egress_guard()
        provider = await oidc.discover(guard, issuer)
        claims = await oidc.exchange_code(
            guard, provider, client_id=client_id,
            client_secret=await run_in_threadpool(ctx.secrets.get, ref),
            redirect_uri=_redirect_uri(request, ctx), code=code,
            verifier=_derive(key, "pkce", expected), nonce=_derive(key, "nonce", expected),
        )  # fmt: skip
        token = await run_in_threadpool(_log_in, ctx, org_id, claims)
    except TinyClawError as exc:
        return _failed(request, exc)
    response = login_response(request, token, after_login(ctx, token))
    response.delete_cookie(COOKIE, path="/app/sso")
    return response


def _log_in(ctx: AppContext, org_id: str, claims: dict[str, object]) -> str:
    with ctx.db.system_session() as session:
        user = sso.login_user(session, org_id, claims)
        token = sessions.start_session(session, user.id)
        audit(session, tenant_id=None, organization_id=org_id, actor=f"user:{user.id}",
              action="session.start", method="sso")  # fmt: skip
        return token

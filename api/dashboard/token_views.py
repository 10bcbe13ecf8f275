"""The API tokens page: create (shown once), list and revoke personal tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api.auth import TokenIn, create_api_token, list_api_tokens, revoke_api_token
from api.dashboard.auth_views import WebUser
from api.dashboard.render import context_of, page, redirect
from core.accounts import Principal
from core.errors import TinyClawError

router = APIRouter(prefix="/app/tokens", include_in_schema=False)


def _page(request: Request, user: Principal, status_code: int = 200, **extra: Any) -> Response:
    tokens = list_api_tokens(context_of(request), user)
    return page(request, "tokens.html", status_code, tokens=tokens, **extra)


@router.get("")
def tokens_page(request: Request, user: WebUser) -> Response:
    """Your live API tokens and a form to create one."""
    return _page(request, user)


@router.post("")
def create(
    request: Request,
    user: WebUser,
    name: Annotated[str, Form(max_length=100)],
    scopes: Annotated[list[str], Form(max_length=3)],
    expires_in_days: Annotated[int, Form(ge=1, le=3650)] = 90,
) -> Response:
    """Create a token and show it once."""
    try:
        body = TokenIn(name=name, scopes=scopes, expires_in_days=expires_in_days)  # type: ignore[arg-type]
    except ValidationError:
        return _page(request, user, 422, error="Pick a name and at least one valid scope.")
    try:
        made = create_api_token(context_of(request), user, body)
    except TinyClawError as exc:
        return _page(request, user, exc.status_code, error=exc.message)
    return _page(request, user, 201, new_token=made)


@router.post("/{token_id}/revoke")
def revoke(request: Request, user: WebUser, token_id: str) -> Response:
    """Revoke one of your tokens."""
    try:
        revoke_api_token(context_of(request), user, token_id)
    except TinyClawError as exc:
        return _page(request, user, exc.status_code, error=exc.message)
    return redirect(request, "/app/tokens?notice=token_revoked")

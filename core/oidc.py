"""OpenID Connect relying party (authorization code flow with PKCE), with Authlib.

An organization's issuer URL is tenant-supplied, so every call to it goes through the
SSRF guard (``core.egress.GuardedTransport``: https only in production, public addresses
only unless ``TCC_SSO_ALLOWED_PRIVATE_NETWORKS`` opens a network, no redirects followed).
The ID token is checked with joserfc (Authlib's JOSE library): signature against the
issuer's JWKS, ``iss``, ``aud``, ``exp`` and the ``nonce`` sent with the request.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from core.egress import EgressGuard, EgressRefused, GuardedTransport
from core.errors import InvalidInput, Unauthorized, UpstreamUnavailable

with warnings.catch_warnings():  # Authlib's httpx integration warns about its own shim
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

SCOPE = "openid email profile"
TIMEOUT = httpx.Timeout(10, connect=5)


@dataclass(frozen=True)
class Provider:
    """The endpoints an issuer's discovery document names."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


def _refused(exc: EgressRefused) -> InvalidInput:
    message = exc.message.replace("provider URL", "issuer URL").replace("provider host", "host")
    return EgressRefused(message, field="issuer")


def check_issuer(guard: EgressGuard, issuer: str) -> str:
    """The issuer URL in canonical form, or a 422 saying why it is refused."""
    try:
        guard.check_url(issuer)
    except EgressRefused as exc:
        raise _refused(exc) from None
    return issuer.strip().rstrip("/")


def _client(guard: EgressGuard, **kw: Any) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        transport=GuardedTransport(guard), timeout=TIMEOUT, follow_redirects=False, **kw
    )


async def discover(guard: EgressGuard, issuer: str) -> Provider:
    """Read the issuer's discovery document (4xx when it is not an OpenID provider)."""
    issuer = check_issuer(guard, issuer)
    try:
        async with httpx.AsyncClient(
            transport=GuardedTransport(guard), timeout=TIMEOUT, follow_redirects=False
        ) as http:
            r = await http.get(f"{issuer}/.well-known/openid-configuration")
        r.raise_for_status()
        doc = r.json()
        provider = Provider(
            issuer=str(doc["issuer"]).rstrip("/"),
            authorization_endpoint=str(doc["authorization_endpoint"]),
            token_endpoint=str(doc["token_endpoint"]),
            jwks_uri=str(doc["jwks_uri"]),
        )
    except EgressRefused as exc:
        raise _refused(exc) from None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        raise InvalidInput(
            "The issuer did not answer with an OpenID Connect discovery document at "
            f"{issuer}/.well-known/openid-configuration.",
            code="sso_issuer_invalid",
            field="issuer",
        ) from None
    if provider.issuer != issuer:
        raise InvalidInput(
            f"The discovery document names another issuer ({provider.issuer}).",
            code="sso_issuer_invalid",
            field="issuer",
        )
    for url in (provider.authorization_endpoint, provider.token_endpoint, provider.jwks_uri):
        check_issuer(guard, url)
    return provider


def authorization_url(
    provider: Provider, client_id: str, redirect_uri: str, state: str, nonce: str, verifier: str
) -> str:
    """Where to send the browser to log in at the provider (PKCE S256)."""
    client = AsyncOAuth2Client(
        client_id=client_id, redirect_uri=redirect_uri, scope=SCOPE, code_challenge_method="S256"
    )
    url, _ = client.create_authorization_url(
        provider.authorization_endpoint, state=state, nonce=nonce, code_verifier=verifier
    )
    return str(url)


async def exchange_code(
    guard: EgressGuard,
    provider: Provider,
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    code: str,
    verifier: str,
    nonce: str,
) -> dict[str, Any]:
    """Trade the authorization code for tokens; the verified ID token's claims."""
    try:
        async with _client(
            guard, client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri
        ) as http:
            token = await http.fetch_token(
                provider.token_endpoint, code=code, code_verifier=verifier
            )
            keys = (await http.get(provider.jwks_uri)).json()  # (with the new token: harmless)
    except EgressRefused as exc:
        raise _refused(exc) from None
    except (OAuthError, httpx.HTTPError, ValueError, KeyError):
        raise UpstreamUnavailable(
            "Your identity provider did not complete the login. Try again.",
            code="sso_provider_error",
        ) from None
    return verify_id_token(token.get("id_token"), keys, provider.issuer, client_id, nonce)


def verify_id_token(
    id_token: object, keys: dict[str, Any], issuer: str, client_id: str, nonce: str
) -> dict[str, Any]:
    """The claims of a genuine ID token for this client and login; 401 otherwise."""
    refused = Unauthorized(
        "The identity provider's answer could not be verified.", code="sso_token_invalid"
    )
    if not isinstance(id_token, str):
        raise refused
    try:
        token = jwt.decode(id_token, KeySet.import_key_set(keys))  # type: ignore[arg-type]
        jwt.JWTClaimsRegistry(
            leeway=60,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            nonce={"essential": True, "value": nonce},
            sub={"essential": True},
            exp={"essential": True},
        ).validate(token.claims)
    except (JoseError, ValueError, TypeError, KeyError):
        raise refused from None
    return dict(token.claims)

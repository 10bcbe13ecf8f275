"""The WhatsApp Business Cloud API, as the control plane uses it.

Connect time: the phone number id is looked up on the Graph API with the tenant's access
token. Webhooks: ``X-Hub-Signature-256`` is an HMAC-SHA256 of the raw body keyed with the
app secret. The access token travels only in the ``Authorization`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import httpx
from pydantic import BaseModel

from core.errors import InvalidInput, UpstreamUnavailable

PHONE_NUMBER_ID = re.compile(r"^[0-9]{5,30}$")
ACCESS_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_.|-]{20,600}$")
APP_SECRET_SHAPE = re.compile(r"^[A-Za-z0-9]{16,128}$")


class WhatsAppNumber(BaseModel):
    phone_number_id: str
    display_phone_number: str
    verified_name: str = ""


class BadWhatsAppCredentials(InvalidInput):
    default_code = "bad_whatsapp_credentials"


def check_shapes(phone_number_id: str, access_token: str, app_secret: str) -> tuple[str, str, str]:
    """Strip and check the three values look right; raise ``BadWhatsAppCredentials``."""
    number, token, secret = phone_number_id.strip(), access_token.strip(), app_secret.strip()
    if not PHONE_NUMBER_ID.match(number):
        raise BadWhatsAppCredentials(
            "The phone number id is the number's numeric id from WhatsApp > API Setup "
            "(not the phone number itself).",
            field="phone_number_id",
        )
    if not ACCESS_TOKEN_SHAPE.match(token):
        raise BadWhatsAppCredentials(
            "That does not look like a WhatsApp access token (use a System User token).",
            field="access_token",
        )
    if not APP_SECRET_SHAPE.match(secret):
        raise BadWhatsAppCredentials(
            "That does not look like an app secret (App settings > Basic > App secret).",
            field="app_secret",
        )
    return number, token, secret


async def lookup_number(
    http: httpx.AsyncClient, graph_base: str, phone_number_id: str, access_token: str
) -> WhatsAppNumber:
    """Look the phone number id up with the access token; clear 4xx errors otherwise."""
    url = f"{graph_base.rstrip('/')}/{phone_number_id}"
    try:
        resp = await http.get(
            url,
            params={"fields": "display_phone_number,verified_name"},
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(
            f"WhatsApp could not be reached to check the number ({type(exc).__name__}).",
            code="whatsapp_unavailable",
        ) from None
    if resp.status_code in (400, 401, 403, 404):
        raise BadWhatsAppCredentials(
            "WhatsApp refused this access token or phone number id. Check both in "
            "WhatsApp > API Setup and paste them again.",
            field="access_token",
        )
    if resp.status_code != 200:
        raise UpstreamUnavailable(
            f"WhatsApp answered {resp.status_code} when checking the number.",
            code="whatsapp_unavailable",
        )
    body = resp.json()
    return WhatsAppNumber(
        phone_number_id=phone_number_id,
        display_phone_number=str(body.get("display_phone_number", "")),
        verified_name=str(body.get("verified_name", "")),
    )


def signature_ok(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    """Whether ``X-Hub-Signature-256`` is ``sha256=<hex HMAC of the raw body>``."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256=") :])

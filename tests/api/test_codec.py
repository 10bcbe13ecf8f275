"""The codec server decrypts workflow payloads for platform admins only."""

from __future__ import annotations

import base64

from sqlalchemy import update
from temporalio.api.common.v1 import Payload

from core.db.models import User
from core.temporal import codec_key
from core.temporal.codec import EncryptionCodec
from tests.api.conftest import Client, signup
from tests.lifecycle_stack import Stack


def _wire(p: Payload) -> dict[str, object]:
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
        "data": base64.b64encode(p.data).decode(),
    }


async def test_codec_round_trip_for_admins_only(api: Client, process_stack: Stack) -> None:
    admin = await signup(api, "admin@example.com")
    customer = await signup(api, "customer@example.com")
    with process_stack.db.system_session() as s:
        s.execute(
            update(User).where(User.email == "admin@example.com").values(is_platform_admin=True)
        )
    codec = EncryptionCodec(codec_key(process_stack.ctx.settings))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"tenant_id": "t1"}')
    [encrypted] = await codec.encode([plain])
    body = {"payloads": [_wire(encrypted)]}

    assert (await api.post("/codec/decode", json=body)).status_code == 401
    assert (await api.post("/codec/decode", json=body, headers=customer)).status_code == 404
    r = await api.post("/codec/decode", json=body, headers=admin)
    assert r.status_code == 200
    decoded = r.json()["payloads"][0]
    assert base64.b64decode(decoded["data"]) == plain.data
    assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"

    r = await api.post("/codec/encode", json={"payloads": [_wire(plain)]}, headers=admin)
    assert r.status_code == 200
    [again] = r.json()["payloads"]
    assert base64.b64decode(again["metadata"]["encoding"]) == b"binary/encrypted"
    assert (await api.post("/codec/decode", json={"nope": 1}, headers=admin)).status_code == 422


async def test_web_ui_origin_may_call_the_codec_with_the_admin_cookie(
    api: Client, process_stack: Stack
) -> None:
    ui = process_stack.ctx.settings.resolved_temporal_ui_url
    pre = await api.options(
        "/codec/decode",
        headers={"Origin": ui, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,x-namespace"},
    )  # fmt: skip
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == ui
    assert pre.headers["access-control-allow-credentials"] == "true"
    other = await api.options("/codec/decode", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    # Elsewhere the API stays same-origin, even for the UI's origin.
    r = await api.get("/plans", headers={"Origin": ui})
    assert "access-control-allow-origin" not in r.headers

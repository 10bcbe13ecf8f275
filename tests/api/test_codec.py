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


async def test_local_web_ui_reaches_the_codec_without_credentials_only_when_trusted(
    tmp_path, db
) -> None:
    from tests.api.light_app import client, light_app

    for trusted in (False, True):
        app = light_app(tmp_path, db, codec_trust_local_ui=trusted)
        settings = app.state.ctx.settings
        ui = settings.resolved_temporal_ui_url
        codec = EncryptionCodec(codec_key(settings))
        [encrypted] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
        body = {"payloads": [_wire(encrypted)]}
        async with client(app) as local, client(app, "192.0.2.5") as remote:
            from_ui = await local.post("/codec/decode", json=body, headers={"Origin": ui})
            assert from_ui.status_code == (200 if trusted else 401)
            evil = {"Origin": "https://evil.example"}
            assert (await local.post("/codec/decode", json=body, headers=evil)).status_code == 401
            # Not a loopback peer: the Origin header alone proves nothing.
            assert (
                await remote.post("/codec/decode", json=body, headers={"Origin": ui})
            ).status_code == 401
            bad = await local.post("/codec/decode", content=b"{nope", headers={"Origin": ui})
            assert bad.status_code in (401, 422)


def test_trusting_the_local_ui_is_refused_in_production() -> None:
    import pytest
    from pydantic import SecretStr, ValidationError

    from core.settings import Settings

    with pytest.raises(ValidationError, match="development only"):
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            environment="production", database_url="postgresql://x/y",
            session_secret=SecretStr("a-long-random-session-secret"),
            codec_key=SecretStr("a-real-codec-key-value"), codec_trust_local_ui=True,
        )  # fmt: skip

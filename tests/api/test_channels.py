"""The channels API: connect with a provider check, the plan's cap, disconnect, no secrets."""

from __future__ import annotations

import httpx

from tests.api.conftest import signup
from tests.channel_stack import (
    ChannelFakes,
    discord_token,
    telegram_token,
    whatsapp_credentials,
)
from tests.lifecycle_stack import Stack

Client = httpx.AsyncClient


async def _bot(api: Client, h: dict[str, str], plan: str) -> str:
    r = await api.post("/bots", json={"name": f"{plan} bot", "plan": plan}, headers=h)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_starter_has_one_channel_pro_two(
    capi: Client, channels_stack: Stack, channel_fakes: ChannelFakes
) -> None:
    h = await signup(capi, "channels@example.com")
    tg, dc = telegram_token(), discord_token()
    channels_stack.telegram.add_bot(tg, username="tg_helper")
    channel_fakes.discord.add_bot(dc, username="dc_helper")

    starter = await _bot(capi, h, "starter")
    r = await capi.put(f"/bots/{starter}/channels/telegram", json={"token": tg}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "connected" and r.json()["detail"]["username"] == "tg_helper"
    r = await capi.put(f"/bots/{starter}/channels/discord", json={"token": dc}, headers=h)
    assert (r.status_code, r.json()["code"]) == (403, "plan_limit_exceeded"), r.text
    assert "Starter" in r.json()["message"] and "Pro plan allows 2" in r.json()["message"]
    # Replacing the one channel's token is not a second channel.
    r = await capi.put(f"/bots/{starter}/channels/telegram", json={"token": tg}, headers=h)
    assert r.status_code == 200, r.text

    pro = await _bot(capi, h, "pro")
    r = await capi.put(f"/bots/{pro}/channels/telegram", json={"token": tg}, headers=h)
    assert r.status_code == 200, r.text
    r = await capi.put(f"/bots/{pro}/channels/discord", json={"token": dc}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["detail"]["username"] == "dc_helper"
    wa = whatsapp_credentials()
    channel_fakes.graph.add_number(wa["phone_number_id"], wa["access_token"])
    r = await capi.put(f"/bots/{pro}/channels/whatsapp", json=wa, headers=h)
    assert (r.status_code, r.json()["code"]) == (403, "plan_limit_exceeded")
    assert "Business plan allows 5" in r.json()["message"]

    listed = await capi.get(f"/bots/{pro}/channels", headers=h)
    assert [c["kind"] for c in listed.json()] == ["telegram", "discord"]
    for secret in (tg, dc):
        assert secret not in listed.text


async def test_connect_checks_credentials_with_the_provider(
    capi: Client, channels_stack: Stack, channel_fakes: ChannelFakes
) -> None:
    h = await signup(capi, "checks@example.com")
    bot = await _bot(capi, h, "business")
    path = f"/bots/{bot}/channels"

    r = await capi.put(f"{path}/discord", json={"token": "not a token"}, headers=h)
    assert (r.status_code, r.json()["code"]) == (422, "bad_discord_token")
    unknown = discord_token()
    r = await capi.put(f"{path}/discord", json={"token": unknown}, headers=h)
    assert (r.status_code, r.json()["code"]) == (422, "bad_discord_token")
    assert "rejected" in r.json()["message"] and unknown not in r.text
    no_intent = discord_token()
    channel_fakes.discord.add_bot(no_intent, message_content=False)
    r = await capi.put(f"{path}/discord", json={"token": no_intent}, headers=h)
    assert (r.status_code, r.json()["code"]) == (422, "discord_intent_missing")
    assert "Message Content intent" in r.json()["message"]

    wa = whatsapp_credentials()
    r = await capi.put(f"{path}/whatsapp", json=wa, headers=h)  # the Graph API does not know it
    assert (r.status_code, r.json()["code"]) == (422, "bad_whatsapp_credentials")
    assert wa["access_token"] not in r.text
    r = await capi.put(f"{path}/whatsapp", json={**wa, "phone_number_id": "+1 555"}, headers=h)
    assert (r.status_code, r.json()["code"]) == (422, "bad_whatsapp_credentials")
    channel_fakes.graph.add_number(wa["phone_number_id"], wa["access_token"], "+1 555 0199")
    r = await capi.put(f"{path}/whatsapp", json={**wa, "owner_id": "+15550001"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["detail"]["display_phone_number"] == "+1 555 0199"
    assert body["webhook_url"].endswith(f"/webhooks/whatsapp/{bot}")
    assert body["detail"]["verify_token"]
    for secret in (wa["access_token"], wa["app_secret"]):
        assert secret not in r.text
    r = await capi.put(f"{path}/slack", json={"token": "x"}, headers=h)
    assert r.status_code == 422
    pairing = await capi.get(f"/bots/{bot}/telegram/pairing", headers=h)
    assert "whatsapp:15550001" in pairing.text


async def test_disconnect_keeps_one_channel(
    capi: Client, channels_stack: Stack, channel_fakes: ChannelFakes
) -> None:
    h = await signup(capi, "disconnect@example.com")
    bot = await _bot(capi, h, "pro")
    tg, dc = telegram_token(), discord_token()
    channels_stack.telegram.add_bot(tg)
    channel_fakes.discord.add_bot(dc)
    assert (
        await capi.put(f"/bots/{bot}/channels/telegram", json={"token": tg}, headers=h)
    ).is_success
    assert (
        await capi.put(f"/bots/{bot}/channels/discord", json={"token": dc}, headers=h)
    ).is_success
    r = await capi.delete(f"/bots/{bot}/channels/telegram", headers=h)
    assert r.status_code == 200, r.text
    r = await capi.delete(f"/bots/{bot}/channels/telegram", headers=h)
    assert (r.status_code, r.json()["code"]) == (404, "unknown_channel")
    r = await capi.delete(f"/bots/{bot}/channels/discord", headers=h)
    assert (r.status_code, r.json()["code"]) == (422, "last_channel")
    other = await signup(capi, "other@example.com")
    assert (await capi.get(f"/bots/{bot}/channels", headers=other)).status_code == 404

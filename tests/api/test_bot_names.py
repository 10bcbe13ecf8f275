"""The public API says "bot" (as the dashboard does); the first name, /tenants, still works."""

from __future__ import annotations

import httpx

from api.app import create_app
from tests.api.conftest import signup


def test_the_schema_says_bot_everywhere() -> None:
    schema = create_app().openapi()
    assert "/bots/{bot_id}" in schema["paths"] and "/admin/bots" in schema["paths"]
    assert not [p for p in schema["paths"] if "tenant" in p]
    names = {
        prm["name"]
        for ops in schema["paths"].values()
        for op in ops.values()
        for prm in op.get("parameters", [])
    }
    assert "bot_id" in names and "tenant_id" not in names
    assert "BotOut" in schema["components"]["schemas"]
    assert not [n for n in schema["components"]["schemas"] if "Tenant" in n]


async def test_bots_and_tenants_are_the_same_routes(api: httpx.AsyncClient) -> None:
    h = await signup(api, "names@example.com")
    created = await api.post("/bots", json={"name": "Named bot"}, headers=h)
    assert created.status_code == 201, created.text
    bid = created.json()["id"]
    as_bot = await api.get(f"/bots/{bid}", headers=h)
    as_tenant = await api.get(f"/tenants/{bid}", headers=h)
    assert as_bot.status_code == as_tenant.status_code == 200
    assert as_bot.json() == as_tenant.json()
    listed = await api.get("/bots", params={"limit": 1}, headers=h)
    assert [b["id"] for b in listed.json()] == [bid]
    # Another account's bot is as unknown under either name.
    other = await signup(api, "other-names@example.com")
    assert (await api.get(f"/bots/{bid}", headers=other)).status_code == 404
    assert (await api.get("/botsx", headers=h)).status_code == 404

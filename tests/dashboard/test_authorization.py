"""Authorization matrix: another tenant's user gets 404 (or 403) on every tenant-scoped route."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute

from api import sandbox
from api.dashboard import admin_views, live, operations, wizard
from tests.dashboard.conftest import live_bot, sign_up
from tests.lifecycle_stack import Stack

BOT_NAME = "Alice private bot"


def form_for(path: str, token: str) -> dict[str, str]:
    """Form fields that would succeed for the owner, so only authorization can refuse them."""
    return {
        "token": token, "owner_telegram_id": "", "mode": "managed", "bundle_id": "starter",
        "text": "leak me", "confirm": "yes", "full": "yes", "confirm_name": BOT_NAME,
        "signal": "kill_switch", "reason": "x", "name": "x", "plan": "starter",
    }  # fmt: skip


def json_for(path: str, token: str) -> dict[str, object]:
    """JSON bodies that would succeed for the owner."""
    return {
        "token": token, "api_key": "sk-test-12345678", "mode": "managed", "bundle_id": "starter",
        "text": "leak me", "confirm": True, "confirm_name": BOT_NAME, "plan": "starter",
    }  # fmt: skip


def dashboard_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the dashboard that names a tenant."""
    out = []
    for module in (wizard, live, operations, sandbox, admin_views):
        for route in module.router.routes:
            if isinstance(route, APIRoute) and "{tenant_id}" in route.path:
                out += [(m, route.path) for m in sorted(route.methods)]
    return out


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) of the JSON API that names a bot."""
    out = []
    for path, ops in app.openapi()["paths"].items():
        if "{bot_id}" in path:
            out += [(m.upper(), path) for m in ops]
    return out


def fill(path: str, tid: str) -> str:
    return path.replace("{tenant_id}", tid).replace("{bot_id}", tid).replace("{name}", "pause")


def assert_refused(r: httpx.Response, tid: str, secrets: list[str], where: str) -> None:
    assert r.status_code in (403, 404), f"{where}: {r.status_code} {r.text[:300]}"
    for value in [BOT_NAME, *secrets]:
        assert value not in r.text, f"{where} leaked {value!r}"


async def test_other_tenants_user_never_sees_or_changes_a_bot(
    app: FastAPI, browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    alice = await sign_up(browsers)
    tid, token = await live_bot(alice, process_stack, BOT_NAME)
    bob = await sign_up(browsers)
    made = await bob.client.post(
        "/auth/tokens", json={"name": "t"}, headers={"X-CSRF-Token": bob.csrf}
    )
    bob_api = made.json()["token"]
    dash, api = dashboard_routes(), api_routes(app)
    assert len(dash) >= 20 and len(api) >= 15, (dash, api)
    for method, path in dash:
        url = fill(path, tid)
        if method == "GET":
            r = await bob.client.get(url)
        else:
            r = await bob.post(url, form_for(path, token))
        assert_refused(r, tid, [token], f"dashboard {method} {path}")
    for method, path in api:
        url = fill(path, tid)
        body = json_for(path, token) if method in ("POST", "PUT") else None
        by_token = await bob.client.request(
            method, url, json=body, headers={"Authorization": f"Bearer {bob_api}"}
        )
        assert_refused(by_token, tid, [token], f"api (token) {method} {path}")
        by_cookie = await bob.client.request(
            method, url, json=body, headers={"X-CSRF-Token": bob.csrf}
        )
        assert_refused(by_cookie, tid, [token], f"api (cookie) {method} {path}")
    # Bob's attempts changed nothing: Alice's bot is still healthy and idle.
    page = (await alice.client.get(f"/app/bots/{tid}/live")).text
    assert 'data-state="healthy"' in page and 'data-settled="yes"' in page
    assert "kill switch on" not in page


async def test_admin_pages_are_hidden_from_customers(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    user = await sign_up(browsers)
    assert (await user.client.get("/app/admin")).status_code == 404
    r = await user.post("/app/admin/tenants/0123/signal", {"signal": "kill_switch"})
    assert r.status_code == 404


async def test_admin_sees_every_tenant_with_temporal_links(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    customer = await sign_up(browsers)
    tid, _ = await live_bot(customer, process_stack, "Customer bot")
    admin = await sign_up(browsers)
    with process_stack.db.system_session() as s:
        from core.db.models import User

        s.query(User).filter(User.email == admin.email).update({"is_platform_admin": True})
    page = await admin.client.get("/app/admin")
    assert page.status_code == 200 and "Customer bot" in page.text
    assert re.search(r"namespaces/default/workflows\?query=TenantId%3D%22" + tid, page.text)
    await admin.csrf_from("/app/admin")
    r = await admin.post(
        f"/app/admin/tenants/{tid}/signal",
        {"signal": "kill_switch", "confirm": "yes", "reason": "abuse report"},
    )
    assert r.status_code == 303
    assert "kill switch on" in (await customer.client.get(f"/app/bots/{tid}/live")).text

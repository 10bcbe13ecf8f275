"""The model picker API and BYOK key checks, including SSRF refusals at save time."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.egress import EgressGuard
from core.model_catalog import CatalogModel
from tests.api.conftest import Client, signup
from tests.fakes.listener import RecordingListener
from tests.fakes.openai_upstream import FakeOpenAI
from tests.lifecycle_stack import Stack

KEY = "sk-tenant-own-key-000000000001"


async def new_bot(api: Client, email: str, plan: str = "starter") -> tuple[str, dict[str, str]]:
    h = await signup(api, email)
    r = await api.post("/tenants", json={"name": "Model bot", "plan": plan}, headers=h)
    assert r.status_code == 201, r.text
    return r.json()["id"], h


def use_catalog(stack: Stack, upstream_url: str) -> None:
    stack.ctx.settings.upstream_urls = [upstream_url]
    stack.ctx.settings.model_catalog = [
        CatalogModel(
            id="house/fast", upstream_model="fake-model", input_per_m=Decimal("1"),
            output_per_m=Decimal("2"), plans=("starter", "pro"), roles=("default", "fast"),
        ),
        CatalogModel(
            id="house/smart", upstream_model="gpt-4o-mini", input_per_m=Decimal("5"),
            output_per_m=Decimal("9"), plans=("starter",), roles=("smart",),
        ),
        CatalogModel(
            id="house/big", input_per_m=Decimal("9"), output_per_m=Decimal("9"), plans=("pro",),
        ),
    ]  # fmt: skip


async def test_without_upstream_only_the_demo_model_is_offered_and_says_so(api: Client) -> None:
    tid, h = await new_bot(api, "demo@example.com")
    r = await api.get(f"/tenants/{tid}/models", headers=h)
    assert r.status_code == 200
    body = r.json()
    assert body["demo"] is True and body["selected"] == "tinyclaw/demo"
    assert [m["id"] for m in body["models"]] == ["tinyclaw/demo"]
    assert "offline" in body["models"][0]["name"]


async def test_managed_pick_is_validated_against_the_plan(
    api: Client, process_stack: Stack
) -> None:
    use_catalog(process_stack, process_stack.upstream.base_url)
    tid, h = await new_bot(api, "managed@example.com")
    body = (await api.get(f"/tenants/{tid}/models", headers=h)).json()
    assert body["demo"] is False and body["selected"] == "house/fast"
    assert [m["id"] for m in body["models"]] == ["house/fast", "house/smart"]
    assert "upstream" not in str(body) and process_stack.upstream.base_url not in str(body)

    for refused in ("house/big", "tinyclaw/demo", "nope"):
        r = await api.put(f"/tenants/{tid}/model", json={"model": refused}, headers=h)
        assert r.status_code == 403 and r.json()["code"] == "model_not_allowed", refused
        assert "house/fast" in r.json()["message"]
    r = await api.put(f"/tenants/{tid}/model", json={"model": "house/smart"}, headers=h)
    assert r.status_code == 200 and r.json()["selected"] == "house/smart"
    assert (await api.get(f"/tenants/{tid}", headers=h)).json()["model"] == "house/smart"
    assert (await api.put(f"/tenants/{tid}/model", json={}, headers=h)).status_code == 422


async def test_byok_key_is_checked_models_listed_and_pick_validated(api: Client) -> None:
    provider = FakeOpenAI(api_key=KEY, models=["zeta-1", "alpha-2"]).start()
    try:
        tid, h = await new_bot(api, "byok@example.com")
        bad = await api.put(
            f"/tenants/{tid}/provider-key",
            json={"api_key": "sk-wrong-0000000000", "base_url": provider.base_url},
            headers=h,
        )
        assert bad.status_code == 422 and bad.json()["code"] == "bad_provider_key"
        missing = await api.put(
            f"/tenants/{tid}/provider-key",
            json={"api_key": KEY, "base_url": provider.base_url, "model": "gpt-9"},
            headers=h,
        )
        assert missing.status_code == 403 and "alpha-2" in missing.json()["message"]
        ok = await api.put(
            f"/tenants/{tid}/provider-key",
            json={"api_key": KEY, "provider": "custom", "base_url": provider.base_url},
            headers=h,
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["detail"]["model"] == "alpha-2" and KEY not in ok.text
        listed = (await api.get(f"/tenants/{tid}/models", headers=h)).json()
        assert listed["mode"] == "byok" and listed["selected"] == "alpha-2"
        assert [m["id"] for m in listed["models"]] == ["alpha-2", "zeta-1"]
        r = await api.put(f"/tenants/{tid}/model", json={"model": "gpt-9"}, headers=h)
        assert r.status_code == 403
        r = await api.put(f"/tenants/{tid}/model", json={"model": "zeta-1"}, headers=h)
        assert r.status_code == 200 and r.json()["selected"] == "zeta-1"
        # Every call to the provider carried the tenant's key, and only to /v1/models.
        assert {r.path for r in provider.requests} == {"/v1/models"}
        assert all(r.authorization == f"Bearer {KEY}" for r in provider.requests[1:])
    finally:
        provider.stop()


async def test_byok_provider_without_models_needs_a_named_model(api: Client) -> None:
    provider = FakeOpenAI(api_key=KEY, models=[]).start()
    provider.models = []  # the fake's default list is not empty
    try:
        tid, h = await new_bot(api, "nomodels@example.com")
        url = provider.base_url
        r = await api.put(
            f"/tenants/{tid}/provider-key", json={"api_key": KEY, "base_url": url}, headers=h
        )
        assert r.status_code == 422 and r.json()["code"] == "model_required"
        r = await api.put(
            f"/tenants/{tid}/provider-key",
            json={"api_key": KEY, "base_url": url, "model": "private-model"},
            headers=h,
        )
        assert r.status_code == 200 and r.json()["detail"]["model"] == "private-model"
    finally:
        provider.stop()


@pytest.mark.parametrize(
    ("host", "code"),
    [
        ("127.0.0.1", "provider_url_refused"),
        ("localhost", "provider_url_refused"),
        ("[::1]", "provider_url_refused"),
        ("[::ffff:127.0.0.1]", "provider_url_refused"),
        ("169.254.169.254", "provider_url_refused"),
        ("10.0.0.7", "provider_url_refused"),
        ("100.64.1.1", "provider_url_refused"),
        ("[fd00:ec2::254]", "provider_url_refused"),
        ("[fe80::1]", "provider_url_refused"),
    ],
)
async def test_private_provider_urls_are_refused_without_a_connection(
    api: Client, process_stack: Stack, host: str, code: str
) -> None:
    process_stack.ctx.settings.byok_allowed_private_networks = []
    tid, h = await new_bot(api, f"ssrf{abs(hash(host))}@example.com")
    with RecordingListener() as listener:
        r = await api.put(
            f"/tenants/{tid}/provider-key",
            json={"api_key": KEY, "base_url": listener.url(host)},
            headers=h,
        )
    assert r.status_code == 422 and r.json()["code"] == code, r.text
    assert KEY not in r.text
    assert listener.connections == []


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pass@provider.example/v1",
        "http://provider.example/v1?key=1",
        "http://provider.example/v1#x",
        "file:///etc/passwd",
    ],
)
async def test_badly_shaped_provider_urls_are_refused(api: Client, url: str) -> None:
    tid, h = await new_bot(api, f"shape{abs(hash(url))}@example.com")
    r = await api.put(
        f"/tenants/{tid}/provider-key", json={"api_key": KEY, "base_url": url}, headers=h
    )
    assert r.status_code == 422 and r.json()["code"] == "provider_url_refused"


async def test_dns_rebinding_at_save_time_is_refused(api: Client, process_stack: Stack) -> None:
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["93.184.216.34"] if len(calls) == 1 else ["127.0.0.1"]

    process_stack.ctx.extras["egress_guard"] = EgressGuard(https_only=False, resolver=rebinding)
    try:
        tid, h = await new_bot(api, "rebind@example.com")
        with RecordingListener() as listener:
            guard = process_stack.ctx.extras["egress_guard"]
            url = f"http://rebind.example:{listener.port}/v1"
            assert await guard.pin(url) == "93.184.216.34"  # what a naive check would see
            r = await api.put(
                f"/tenants/{tid}/provider-key", json={"api_key": KEY, "base_url": url}, headers=h
            )
        assert r.status_code == 422 and r.json()["code"] == "provider_url_refused"
        assert listener.connections == [] and len(calls) == 2
    finally:
        del process_stack.ctx.extras["egress_guard"]


async def test_redirects_are_not_followed(api: Client) -> None:
    import http.server
    import threading

    with RecordingListener() as target:

        class Redirect(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", target.url(path="/v1/models"))
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            tid, h = await new_bot(api, "redirect@example.com")
            r = await api.put(
                f"/tenants/{tid}/provider-key",
                json={"api_key": KEY, "base_url": f"http://127.0.0.1:{server.server_port}/v1"},
                headers=h,
            )
        finally:
            server.shutdown()
            server.server_close()
    assert r.status_code == 422 and r.json()["code"] == "provider_redirect"
    assert target.connections == []

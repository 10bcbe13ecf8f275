"""Managed models come from the operator's catalog; BYOK provider URLs cannot reach inside."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from core.db.models import UsageEvent
from core.egress import EgressGuard
from core.model_catalog import CatalogModel
from tests.fakes.listener import RecordingListener
from tests.gateway.helpers import (
    BYOK_KEY,
    PLATFORM_KEY,
    add_byok_key,
    bearer,
    chat,
    create_tenant,
    issue,
    running_gateway,
)


def catalog(upstream_url: str | None = None) -> list[CatalogModel]:
    return [
        CatalogModel(
            id="house/fast", upstream=upstream_url, upstream_model="fake-model",
            input_per_m=Decimal("2"), output_per_m=Decimal("10"),
            plans=("starter", "pro"), roles=("default", "fast"),
        ),
        CatalogModel(
            id="house/smart", upstream_model="gpt-4o-mini", input_per_m=Decimal("5"),
            output_per_m=Decimal("20"), plans=("pro",), roles=("smart",),
        ),
    ]  # fmt: skip


async def test_catalog_model_is_sent_under_its_upstream_name_and_priced(
    db, store, upstream, upstream2
) -> None:
    tenant = create_tenant(db, plan="starter")
    upstream2.script("one two three four")  # 4 tokens out
    settings = {"model_catalog": catalog(upstream2.base_url)}
    async with running_gateway(
        db, store, [upstream.base_url, upstream2.base_url], settings=settings
    ) as h:
        token = issue(db, tenant)
        models = await h.client.get("/v1/models", headers=bearer(token))
        ok = await h.client.post(
            "/v1/chat/completions", json=chat("house/fast", "a b"), headers=bearer(token)
        )
        smart = await h.client.post(
            "/v1/chat/completions", json=chat("house/smart", "hi"), headers=bearer(token)
        )
        unknown = await h.client.post(
            "/v1/chat/completions", json=chat("openai/gpt-4o-mini", "hi"), headers=bearer(token)
        )
        await h.flush()
    assert [m["id"] for m in models.json()["data"]] == ["house/fast"]
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == (
        "one two three four"
    )
    # Routed to the entry's own upstream, under the upstream's model name, with the platform key.
    assert upstream.completions() == []
    [sent] = upstream2.completions()
    assert sent.body["model"] == "fake-model"
    assert sent.authorization == f"Bearer {PLATFORM_KEY}"
    assert smart.status_code == 403 and smart.json()["error"]["code"] == "model_not_allowed"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    with db.tenant_session(tenant) as s:
        [row] = s.scalars(select(UsageEvent).where(UsageEvent.outcome == "ok")).all()
    # 2 tokens in at $2/M + 4 out at $10/M = 44 micro-dollars, metered under the catalog id.
    assert (row.model, row.mode, row.cost_micros) == ("house/fast", "managed", 44)


async def test_byok_with_a_private_provider_url_is_refused_without_connecting(db, store) -> None:
    tenant = create_tenant(db, mode="byok")
    with RecordingListener() as listener:
        add_byok_key(db, store, tenant, listener.url())
        # No allowlist: the operator did not open loopback to tenants.
        async with running_gateway(db, store, settings={"byok_allowed_private_networks": []}) as h:
            r = await h.client.post(
                "/v1/chat/completions",
                json=chat("gpt-4o-mini", "hi"),
                headers=bearer(issue(db, tenant)),
            )
    assert r.status_code == 422 and r.json()["error"]["code"] == "provider_url_refused"
    assert BYOK_KEY not in r.text
    assert listener.connections == []


@pytest.mark.parametrize("host", ["localhost", "[::1]", "[::ffff:127.0.0.1]", "169.254.169.254"])
async def test_byok_loopback_spellings_are_refused(db, store, host: str) -> None:
    tenant = create_tenant(db, mode="byok")
    with RecordingListener() as listener:
        add_byok_key(db, store, tenant, listener.url(host))
        async with running_gateway(db, store, egress=EgressGuard(https_only=False)) as h:
            r = await h.client.post(
                "/v1/chat/completions", json=chat("m", "hi"), headers=bearer(issue(db, tenant))
            )
    assert r.status_code == 422
    assert listener.connections == []


async def test_byok_dns_rebinding_is_refused_at_the_gateway(db, store) -> None:
    answers = iter([["93.184.216.34"]])

    async def rebinding(host: str, port: int) -> list[str]:
        # Public when the control plane checked the key at save time; loopback now.
        return next(answers, ["127.0.0.1"])

    guard = EgressGuard(https_only=False, resolver=rebinding)
    tenant = create_tenant(db, mode="byok")
    with RecordingListener() as listener:
        url = f"http://rebind.example:{listener.port}/v1"
        assert await guard.pin(url) == "93.184.216.34"  # the save-time answer
        add_byok_key(db, store, tenant, url)
        async with running_gateway(db, store, egress=guard) as h:
            r = await h.client.post(
                "/v1/chat/completions", json=chat("m", "hi"), headers=bearer(issue(db, tenant))
            )
    assert r.status_code == 422 and r.json()["error"]["code"] == "provider_url_refused"
    assert listener.connections == []


async def test_byok_allowlisted_provider_is_pinned_and_metered_as_byok(db, store) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    from core.egress import parse_networks
    from tests.fakes.openai_upstream import FakeOpenAI

    own = FakeOpenAI().start()
    try:
        port = own.base_url.rsplit(":", 1)[1].split("/")[0]
        guard = EgressGuard(parse_networks(["127.0.0.0/8"]), https_only=False, resolver=resolve)
        tenant = create_tenant(db, mode="byok")
        add_byok_key(db, store, tenant, f"http://provider.internal:{port}/v1")
        async with running_gateway(db, store, egress=guard) as h:
            r = await h.client.post(
                "/v1/chat/completions",
                json=chat("their-model", "hi"),
                headers=bearer(issue(db, tenant)),
            )
            await h.flush()
        assert r.status_code == 200, r.text
        [sent] = own.completions()
        assert sent.body["model"] == "their-model"
        assert sent.authorization == f"Bearer {BYOK_KEY}"
        assert sent.headers["host"] == f"provider.internal:{port}"
    finally:
        own.stop()
    with db.tenant_session(tenant) as s:
        [row] = s.scalars(select(UsageEvent)).all()
    assert (row.mode, row.cost_micros, row.outcome) == ("byok", 0, "ok")


async def test_byok_https_provider_is_dialled_on_the_pinned_ip_with_tls_for_its_name(
    db, store, monkeypatch
) -> None:
    from core.egress import parse_networks
    from tests.fakes.tls import TlsServer

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    guard = EgressGuard(parse_networks(["127.0.0.0/8"]), https_only=True, resolver=resolve)
    tenant = create_tenant(db, mode="byok")
    with TlsServer("provider.internal") as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))  # the gateway's trust store
        add_byok_key(db, store, tenant, f"https://provider.internal:{server.port}/v1")
        async with running_gateway(db, store, egress=guard) as h:
            r = await h.client.post(
                "/v1/chat/completions", json=chat("m", "hi"), headers=bearer(issue(db, tenant))
            )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "over tls"
    assert server.sni == ["provider.internal"] and server.requests == [
        ("POST", "/v1/chat/completions")
    ]


async def test_streamed_and_anthropic_calls_also_use_the_upstream_model_name(
    db, store, upstream
) -> None:
    tenant = create_tenant(db, plan="starter")
    settings = {"model_catalog": catalog()}
    async with running_gateway(db, store, [upstream.base_url], settings=settings) as h:
        token = issue(db, tenant)
        streamed = await h.client.post(
            "/v1/chat/completions",
            json=chat("house/fast", "hi", stream=True),
            headers=bearer(token),
        )
        anthropic = await h.client.post(
            "/v1/messages",
            json={"model": "house/fast", "max_tokens": 50,
                  "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": token},
        )  # fmt: skip
    assert streamed.status_code == 200 and "data: [DONE]" in streamed.text
    assert anthropic.status_code == 200, anthropic.text
    assert anthropic.json()["model"] == "house/fast"  # the caller's name comes back
    assert [c.body["model"] for c in upstream.completions()] == ["fake-model", "fake-model"]

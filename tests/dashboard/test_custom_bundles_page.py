"""Custom bundles in the dashboard (issue 17), billing on against the Stripe fake: author a
bundle, see the refusal with the template's line and the form kept, fix, publish, edit as a
new version, compare, pick it in the wizard, pay and deploy; another account sees nothing."""

from __future__ import annotations

import html
from collections.abc import Callable

import httpx

from tests.dashboard.conftest import bot_token, new_bot, sign_up, wait_settled
from tests.dashboard.test_billing_on import WEBHOOK_SECRET, billing_on  # noqa: F401 (fixture)
from tests.fakes.stripe_api import FakeStripe, signed
from tests.lifecycle_stack import Stack

MANIFEST = """id = "concierge"
version = "{version}"
name = "Concierge"
description = "Books tables for our guests."
changelog = "{changelog}"
plans = ["business"]
schema_version = 1

[agents.host]
name = "Host"
role = "Welcomes guests and books tables."
prompt_template = "agents/host.md"

[prompts]
heartbeat = "heartbeat.md"
"""
HOST = "# {{ agent.name }}\n\nYou are the host of {{ tenant_name }}.\n{{ agent.role }}\n"


def form(version: str, host: str, changelog: str = "First.") -> dict[str, str | list[str]]:
    return {
        "manifest": MANIFEST.format(version=version, changelog=changelog),
        "template_name": ["agents/host.md", "heartbeat.md", ""],
        "template_text": [host, "Reply OK.\n", ""],
    }


async def test_author_fix_version_deploy_and_keep_private(
    browsers: Callable[[], httpx.AsyncClient],
    billing_on: FakeStripe,  # noqa: F811 (the fixture imported above)
    process_stack: Stack,
) -> None:
    alice = await sign_up(browsers)
    tid = await new_bot(alice, "Bistro", plan="business")
    [org] = [o["id"] for o in (await alice.client.get("/orgs")).json()]
    # Custom bundles count paid-up Business bots only: pay for this one first (on Starter).
    token = bot_token()
    process_stack.telegram.add_bot(token, username="bistro_bot")
    await alice.csrf_from(f"/app/bots/{tid}/setup/telegram")
    r = await alice.post(f"/app/bots/{tid}/setup/telegram", {"token": token})
    assert r.status_code == 303
    r = await alice.post(f"/app/bots/{tid}/setup/model", {"mode": "managed"})
    assert r.status_code == 303
    r = await alice.post(f"/app/bots/{tid}/deploy", {"bundle_id": "starter"})
    assert r.status_code == 303, r.text
    [session] = billing_on.checkout_sessions.values()
    stripe = browsers()
    for event in billing_on.complete_checkout(session["id"]):
        body, header = signed(event, WEBHOOK_SECRET)
        resp = await stripe.post(
            "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
        )
        assert resp.status_code == 200, resp.text
    await wait_settled(alice, tid, "healthy")
    base = f"/app/orgs/{org}/bundles"
    page = (await alice.client.get(base)).text
    assert "Publish a version" in page and "id = &#34;my-bundle&#34;" in page
    await alice.csrf_from(base)

    broken = form("1.0.0", HOST.replace("{{ tenant_name }}", "{{ tenant_name }"))
    r = await alice.post(base, broken)  # type: ignore[arg-type]
    assert r.status_code == 422
    text = html.unescape(r.text)
    assert "bundle.toml: agents.host.prompt_template: template 'agents/host.md': line 3:" in text, (
        text[:3000]
    )
    assert 'name = "Concierge"' in text  # the author's text is kept in the form

    r = await alice.post(base, form("1.0.0", HOST))  # type: ignore[arg-type]
    assert r.status_code == 303 and r.headers["location"].endswith(f"{base}/concierge")
    page = (await alice.client.get(f"{base}/concierge")).text
    assert (
        "Concierge" in page and "Welcomes guests" in page and "Edit (publish a new version)" in page
    )
    edit = html.unescape((await alice.client.get(f"{base}?edit=concierge")).text)
    assert 'version = "1.0.0"' in edit and "You are the host of {{ tenant_name }}." in edit
    again = await alice.post(base, form("1.0.0", HOST))  # type: ignore[arg-type]
    assert again.status_code == 409 and "for example 1.0.1" in html.unescape(again.text)
    r = await alice.post(base, form("1.1.0", HOST + "Offer the terrace first.\n", "Terrace."))  # type: ignore[arg-type]
    assert r.status_code == 303
    diff = (await alice.client.get(f"{base}/concierge/diff?from=1.0.0&to=1.1.0")).text
    assert '<span class="add">+Offer the terrace first.</span>' in diff

    # The bot page offers it to this organization's bot; the switch runs it.
    page = (await alice.client.get(f"/app/bots/{tid}")).text
    assert 'value="concierge"' in page
    await alice.csrf_from(f"/app/bots/{tid}")
    r = await alice.post(f"/app/bots/{tid}/switch", {"bundle_id": "concierge"})
    assert r.status_code == 303, r.text
    await wait_settled(alice, tid, "healthy")
    page = (await alice.client.get(f"/app/bots/{tid}")).text
    assert "Now running concierge 1.1.0." in page
    assert f'href="{base}/concierge?version=1.1.0"' in page  # its own page, not the market

    # Another account: 404 on the organization's pages, and not offered in its wizard.
    bob = await sign_up(browsers)
    for path in (base, f"{base}/concierge", f"{base}/concierge/diff?from=1.0.0&to=1.1.0"):
        assert (await bob.client.get(path)).status_code == 404, path
    bob_bot = await new_bot(bob, "Other", plan="business")
    assert (
        'value="concierge"' not in (await bob.client.get(f"/app/bots/{bob_bot}/setup/bundle")).text
    )
    assert "Concierge" not in (await bob.client.get("/app/bundles")).text

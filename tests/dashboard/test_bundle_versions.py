"""A bot pinned to a bundle version, and the "newer version available" offer that switches it
(issue 17), with billing on against the Stripe fake and the process driver."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.dashboard.conftest import bot_token, new_bot, sign_up, wait_settled
from tests.dashboard.test_billing_on import WEBHOOK_SECRET, billing_on  # noqa: F401 (fixture)
from tests.fakes.stripe_api import FakeStripe, signed
from tests.lifecycle_stack import Stack


async def test_pinned_deploy_then_newer_version_offer_switches_and_moves_the_pin(
    browsers: Callable[[], httpx.AsyncClient],
    billing_on: FakeStripe,  # noqa: F811 (the fixture imported above)
    process_stack: Stack,
) -> None:
    b = await sign_up(browsers)
    tid = await new_bot(b, "Pinned bot", plan="starter")
    token = bot_token()
    process_stack.telegram.add_bot(token, username="pinned_bot")
    assert (await b.post(f"/app/bots/{tid}/setup/telegram", {"token": token})).status_code == 303
    assert (await b.post(f"/app/bots/{tid}/setup/model", {"mode": "managed"})).status_code == 303
    r = await b.post(f"/app/bots/{tid}/deploy", {"bundle_id": "starter"})
    assert r.status_code == 303, r.text  # to Stripe Checkout; the bundle is chosen
    api = {"X-CSRF-Token": b.csrf}

    # Pinned before the first deploy: the paid deploy runs 1.0.0, not the latest 1.1.0.
    bad = await b.client.put(f"/bots/{tid}/bundle-pin", json={"version": "9.9.9"}, headers=api)
    assert bad.status_code == 404 and "has no version 9.9.9" in bad.json()["message"]
    pinned = await b.client.put(f"/bots/{tid}/bundle-pin", json={"version": "1.0.0"}, headers=api)
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["pinned_version"] == "1.0.0"
    [session] = billing_on.checkout_sessions.values()
    stripe = browsers()
    for event in billing_on.complete_checkout(session["id"]):
        body, header = signed(event, WEBHOOK_SECRET)
        resp = await stripe.post(
            "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
        )
        assert resp.status_code == 200, resp.text
    await wait_settled(b, tid, "healthy")

    # Pause and resume re-provision the bot: a pinned bot stays on its version.
    await b.csrf_from(f"/app/bots/{tid}")
    assert (await b.post(f"/app/bots/{tid}/actions/pause")).status_code == 303
    await wait_settled(b, tid, "paused")
    assert (await b.post(f"/app/bots/{tid}/actions/resume")).status_code == 303
    await wait_settled(b, tid, "healthy")
    versions = (await b.client.get(f"/bots/{tid}/bundle-versions")).json()
    assert versions["running_version"] == "1.0.0" and versions["pinned_version"] == "1.0.0"
    assert [v["version"] for v in versions["newer"]] == ["1.1.0"]
    assert "clarifying question" in versions["newer"][0]["changelog"]

    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "A newer version is available: v1.1.0." in page
    assert 'href="/app/bundles/starter/diff?from=1.0.0&amp;to=1.1.0"' in page
    assert 'name="bundle_version" value="1.1.0"' in page
    assert "pinned to v1.0.0" in page

    # The pin cannot jump past the switch's checks and snapshot.
    jump = await b.client.put(f"/bots/{tid}/bundle-pin", json={"version": "1.1.0"}, headers=api)
    assert jump.status_code == 409 and jump.json()["code"] == "pin_not_running"
    assert "switch-bundle" in jump.json()["message"]

    # Taking the offer runs the switch workflow; the pin follows the version now running.
    await b.csrf_from(f"/app/bots/{tid}")
    r = await b.post(f"/app/bots/{tid}/switch", {"bundle_id": "starter", "bundle_version": "1.1.0"})
    assert r.status_code == 303, r.text
    await wait_settled(b, tid, "healthy")
    versions = (await b.client.get(f"/bots/{tid}/bundle-versions")).json()
    assert versions["running_version"] == "1.1.0" and versions["pinned_version"] == "1.1.0"
    assert versions["newer"] == []
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "A newer version is available" not in page and "pinned to v1.1.0" in page
    assert "Now running starter 1.1.0." in page

    # Unpinned from the page: the bot follows the latest again.
    await b.csrf_from(f"/app/bots/{tid}")
    assert (await b.post(f"/app/bots/{tid}/unpin")).status_code == 303
    versions = (await b.client.get(f"/bots/{tid}/bundle-versions")).json()
    assert versions["pinned_version"] is None

"""A team in headless Chromium, in the production configuration (billing on against the
Stripe fake, real SMTP delivery to a local server): the owner makes an organization and a
bot in it, invites a member by email; the member signs up from the link, accepts, and
sees only what a member may do; made a viewer, they see the bot read-only; the owner's
audit log shows who joined and from where."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from api.billing import STRIPE_EXTRA
from tests.e2e.conftest import AppServer, shot, unique_email
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.smtp import Inbox, smtp_server
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.telegram import FakeTelegram
from tests.lifecycle_stack import start_stack

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"
PRICES = {"starter": "price_starter", "pro": "price_pro", "business": "price_business"}
LINK = re.compile(r"http://\S+(/app/invitations/accept\?token=\S+)")


@pytest.fixture
async def team_server(
    tmp_path: Path, temporal_env: WorkflowEnvironment, fakes: tuple[FakeTelegram, FakeOpenAI]
) -> AsyncIterator[tuple[AppServer, Inbox]]:
    stripe = FakeStripe(prices={price: plan for plan, price in PRICES.items()}).start()
    try:
        with smtp_server() as (inbox, smtp_port):
            async for stack in start_stack(tmp_path, temporal_env, fakes, "process"):
                s = stack.ctx.settings
                s.stripe_secret_key, s.stripe_api_base = SecretStr(stripe.api_key), stripe.url
                s.stripe_webhook_secret = SecretStr("whsec_orgs_e2e_000001")
                s.stripe_price_ids = PRICES
                s.smtp_host, s.smtp_port, s.smtp_starttls = "127.0.0.1", smtp_port, False
                stack.ctx.extras.pop(STRIPE_EXTRA, None)
                app = AppServer(stack).start()
                s.public_url = app.url
                try:
                    yield app, inbox
                finally:
                    app.stop()
    finally:
        stripe.stop()


async def invitation_link(inbox: Inbox, email: str) -> str:
    for _ in range(300):
        for message in inbox.to(email):
            found = LINK.search(message.get_payload(decode=True).decode())  # type: ignore[union-attr]
            if found:
                return found.group(1)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no invitation reached {email}")


async def new_page(browser: Browser, url: str) -> Page:
    context = await browser.new_context(base_url=url, viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(20_000)
    return page


async def test_invite_accept_and_see_only_what_the_role_allows(
    browser: Browser, team_server: tuple[AppServer, Inbox]
) -> None:
    server, inbox = team_server
    assert server.stack.ctx.settings.billing_enabled
    owner, member_email = await new_page(browser, server.url), unique_email()

    await owner.goto("/app/signup")
    await owner.fill("#email", unique_email())
    await owner.fill("#password", PASSWORD)
    await owner.click("main button[type=submit]")
    await owner.wait_for_url(re.compile(r"/app/new"))
    await owner.goto("/app/orgs")
    await owner.fill("#org-name", "Acme Support")
    await owner.click("text=Create organization")
    await owner.wait_for_url(re.compile(r"/app/orgs/[0-9a-f]{32}$"))
    org_url = owner.url
    await owner.goto("/app/new")
    await owner.fill("#name", "Acme helpdesk")
    await owner.click("main button[type=submit]")
    await owner.wait_for_url(re.compile(r"/app/bots/[0-9a-f]{32}/setup/telegram"))
    bot_id = re.search(r"/app/bots/([0-9a-f]{32})/", owner.url).group(1)  # type: ignore[union-attr]

    await owner.goto(org_url)
    await owner.fill("#invite-email", member_email)
    await owner.select_option("#invite-role", "member")
    await owner.click("text=Send invitation")
    await expect(owner.locator("main")).to_contain_text(f"Invitation sent to {member_email}")
    await shot(owner, "orgs-invited")

    link = await invitation_link(inbox, member_email)
    member = await new_page(browser, server.url)
    await member.goto(link)
    await expect(member.locator("h1")).to_have_text("Join Acme Support")
    await member.click("#signup-to-accept")
    await expect(member.locator("#email")).to_have_value(member_email)
    await member.fill("#password", PASSWORD)
    await member.click("main button[type=submit]")
    await member.wait_for_url(re.compile(r"/app/invitations/accept"))
    await member.click("#accept")
    await member.wait_for_url(re.compile(r"/app\?notice=joined"))
    await expect(member.locator("#current-org")).to_contain_text("Acme Support")
    await expect(member.locator("#current-org")).to_contain_text("member")
    await expect(member.locator("main")).to_contain_text("Acme helpdesk")
    await expect(member.locator("main a.button", has_text="New bot")).to_have_count(0)

    # A member operates the bot but does not configure, bill or delete it.
    await member.goto(f"/app/bots/{bot_id}")
    await expect(member.locator("#actions")).to_be_visible()
    for absent in ("#read-only", "#switch", "#reset", "#delete", "#action-deploy"):
        await expect(member.locator(absent)).to_have_count(0)
    await expect(member.locator("text=Manage payment and plan")).to_have_count(0)
    await shot(member, "orgs-member-bot")
    r = await member.request.get(f"/app/bots/{bot_id}/setup/telegram")
    assert r.status == 403
    await member.goto(org_url)
    await expect(member.locator("#invite-form")).to_have_count(0)
    await expect(member.locator("#audit-link")).to_have_count(0)
    assert (await member.request.get(f"{org_url}/audit")).status == 403

    # The owner makes them a viewer: the bot page turns read-only.
    await owner.goto(org_url)
    row = owner.locator(f"tr[data-member='{member_email}']")
    await row.locator("select").select_option("viewer")
    await row.locator("text=Set role").click()
    await expect(owner.locator(f"tr[data-member='{member_email}'] td.role")).to_have_text("viewer")
    await member.goto(f"/app/bots/{bot_id}")
    await expect(member.locator("#read-only")).to_be_visible()
    await expect(member.locator("#actions")).to_have_count(0)
    r = await member.request.post(f"/app/bots/{bot_id}/actions/pause", form={"csrf_token": "x"})
    assert r.status == 403  # the CSRF check or the role: a viewer changes nothing

    # The owner's audit log: who joined, their role change, from which address.
    await owner.goto(f"{org_url}/audit")
    await owner.fill("#f-action", "invitation.")
    await owner.click("#audit-filter button[type=submit]")
    audit_rows = owner.locator("#audit tbody tr")
    await expect(audit_rows).to_have_count(2)
    await expect(audit_rows.first).to_contain_text("invitation.accept")
    await expect(audit_rows.first).to_contain_text(member_email)
    await expect(audit_rows.first).to_contain_text("127.0.0.1")
    await expect(owner.locator("#audit-csv-locked")).to_be_visible()
    await shot(owner, "orgs-audit")

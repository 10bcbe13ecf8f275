"""In headless Chromium: the bot page offers only what the bot's state allows, outcomes appear
beside the control that caused them (post/redirect/get), and the pages pass axe-core."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from core.db.models import User
from tests.e2e.conftest import AppServer, shot
from tests.e2e.test_onboarding import new_token, sign_up_and_create
from tests.lifecycle_stack import Stack

AXE = Path(__file__).resolve().parents[2] / ".cache/axe/node_modules/axe-core/axe.min.js"
PHONE = {"width": 375, "height": 740}


async def deploy_bot(page: Page, stack: Stack, name: str, *, broken: bool = False) -> str:
    """Sign up, create, connect a token and deploy; the bot's id. ``broken``: Telegram
    refuses the token once it is saved, so the deploy fails."""
    await sign_up_and_create(page, name)
    await page.get_by_role("button", name="Continue").click()
    token = new_token()
    stack.telegram.add_bot(token, username=f"{name.lower().replace(' ', '_')}_bot")
    await page.get_by_label("Bot token").fill(token)
    await page.get_by_role("button", name="Check and connect").click()
    await page.get_by_role("button", name="Save and continue").click()
    if broken:
        stack.telegram.fail_next(token, "getMe", error_code=401, retry_after=None, times=1000)
    await page.get_by_role("button", name="Deploy").click()
    await expect(page.locator("#live")).to_have_attribute("data-settled", "yes", timeout=90_000)
    tid = re.search(r"/app/bots/([0-9a-f]+)/", page.url)
    assert tid, page.url
    await page.goto(f"/app/bots/{tid.group(1)}")
    return tid.group(1)


async def expect_offered(page: Page, enabled: set[str], disabled: set[str]) -> None:
    for name in enabled:
        await expect(page.locator(f"#action-{name}")).to_be_enabled()
    for name in disabled:
        button = page.locator(f"#action-{name}")
        await expect(button).to_be_disabled()
        await expect(page.locator(f"#why-{name}")).to_have_text(re.compile(r"\w"))


async def test_actions_follow_the_state_and_outcomes_show_beside_their_form(
    page: Page, server: AppServer, process_stack: Stack
) -> None:
    tid = await deploy_bot(page, process_stack, "Stateful")
    await expect(page.locator("#head-state")).to_have_text("healthy")
    await expect_offered(page, {"pause", "restart", "switch", "reset", "delete"}, {"resume"})
    await expect(page.locator("#why-resume")).to_have_text("Available when the bot is paused.")
    await shot(page, "20-bot-healthy")

    await page.locator("#action-pause").click()
    # Post/redirect/get: the address is the bot page's, the outcome sits by the actions.
    await expect(page).to_have_url(re.compile(rf"/app/bots/{tid}#actions-outcome$"))
    await expect(page.locator("#actions-outcome")).to_contain_text("Pause queued")
    await expect(page.locator("#live")).to_have_attribute("data-state", "paused", timeout=30_000)
    await expect(page.locator("#live")).to_have_attribute("data-settled", "yes")
    await expect(page.locator("#head-state")).to_have_text("paused")
    await expect_offered(page, {"resume", "delete"}, {"pause", "restart", "switch", "reset"})
    await shot(page, "21-bot-paused")

    # Back leads to the pages that were shown, never to a form to post again.
    await page.go_back()
    assert "/actions/" not in page.url
    await expect(page.get_by_role("heading", name="Stateful")).to_be_visible()
    await page.go_forward()

    # A wrong confirmation: the error is next to the delete form, in view, with the focus.
    await page.goto(f"/app/bots/{tid}")
    await page.get_by_label(re.compile("Type the bot's name")).fill("stateful")
    await page.get_by_role("button", name="Delete permanently").click()
    await expect(page).to_have_url(re.compile(rf"/app/bots/{tid}#delete-outcome$"))
    error = page.locator("#delete-outcome")
    await expect(error).to_contain_text("exact name")
    await expect(error).to_be_in_viewport()
    focused = await page.evaluate("() => document.activeElement && document.activeElement.id")
    assert focused == "delete-outcome", focused
    await shot(page, "22-delete-refused")
    await page.reload()  # shown once: a reload neither repeats the post nor the error
    await expect(page.locator("#delete-outcome")).to_have_count(0)

    await page.get_by_label(re.compile("Type the bot's name")).fill("Stateful")
    await page.get_by_role("button", name="Delete permanently").click()
    await expect(page).to_have_url(re.compile(r"/app(\?notice=deleted)?$"))
    row = page.get_by_role("row", name=re.compile("Stateful"))
    await expect(row).to_contain_text(re.compile("deleting|deleted"))
    await page.goto(f"/app/bots/{tid}")
    await expect(page.locator("#live")).to_have_attribute("data-state", "deleted", timeout=30_000)
    await page.reload()
    await expect(page.locator("#deleted-notice")).to_be_visible()
    for name in ("pause", "resume", "restart", "deploy", "switch", "reset", "delete"):
        await expect(page.locator(f"#action-{name}")).to_have_count(0)
    await shot(page, "23-bot-deleted")
    await page.goto("/app")
    await expect(page.get_by_role("row", name=re.compile("Stateful"))).to_have_count(0)


async def test_a_failed_bot_offers_restart_and_deploy(
    page: Page, server: AppServer, process_stack: Stack
) -> None:
    tid = await deploy_bot(page, process_stack, "Broken", broken=True)
    await expect(page.locator("#head-state")).to_have_text("failed")
    await expect_offered(page, {"restart", "delete"}, {"pause", "resume", "switch", "reset"})
    await expect(page.locator("#action-deploy")).to_be_visible()
    await expect(page.locator("#test-unavailable")).to_be_visible()
    await shot(page, "24-bot-failed")
    # A failed bot may be deployed again from the bundle step.
    await page.goto(f"/app/bots/{tid}/setup/bundle")
    await expect(page.get_by_role("button", name="Deploy")).to_be_visible()


def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: scripts/setup-system.sh installs axe-core from npm")
    return AXE.read_text()


async def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page, as readable lines."""
    await page.wait_for_load_state("networkidle")
    await page.add_script_tag(content=axe_source())
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


async def test_pages_pass_axe_at_desktop_and_phone_width(
    browser: Browser, server: AppServer, process_stack: Stack
) -> None:
    found: dict[str, list[str]] = {}
    for label, viewport in (("desktop", {"width": 1200, "height": 900}), ("phone", PHONE)):
        context = await browser.new_context(base_url=server.url, viewport=viewport, bypass_csp=True)
        page = await context.new_page()
        page.set_default_timeout(20_000)

        async def check(name: str, page: Page = page, label: str = label) -> None:
            found[f"{label} {name}"] = await serious_violations(page)
            await shot(page, f"axe-{label}-{name}")

        await page.goto("/app/signup")
        await check("signup")
        await sign_up_and_create(page, f"Axe {label}")
        await check("wizard-plan")
        await page.get_by_role("button", name="Continue").click()
        await expect(page.get_by_label("Bot token")).to_be_visible()
        await check("wizard-telegram")
        token = new_token()
        process_stack.telegram.add_bot(token, username=f"axe_{label}_bot")
        await page.get_by_label("Bot token").fill(token)
        await page.get_by_role("button", name="Check and connect").click()
        await expect(
            page.get_by_role("heading", name=re.compile("reach its model"))
        ).to_be_visible()
        await check("wizard-model")
        await page.get_by_role("button", name="Save and continue").click()
        await expect(page.get_by_role("button", name="Deploy")).to_be_visible()
        await check("wizard-bundle")
        await page.get_by_role("button", name="Deploy").click()
        await expect(page.locator("#live")).to_have_attribute("data-settled", "yes", timeout=60_000)
        await check("progress")
        await page.get_by_role("link", name="Go to the bot's operations page").click()
        await expect(page.locator("#runtime-status")).to_be_visible()
        await check("bot")
        # Phone width: nothing wider than the screen.
        overflow = await page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{label}: the bot page scrolls sideways by {overflow}px"
        email = await page.locator("header .muted").first.inner_text()
        with process_stack.db.system_session() as s:
            s.query(User).filter(User.email == email.strip("()")).update(
                {"is_platform_admin": True}
            )
        await page.goto("/app/admin")
        await expect(page.get_by_role("heading", level=1)).to_be_visible()
        await check("admin")
        await context.close()
    assert all(not v for v in found.values()), {k: v for k, v in found.items() if v}
    assert len(found) == 16

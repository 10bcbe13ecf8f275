"""In real headless Chromium: sign up, plan, token, bundle, deploy, live progress, a reply."""

from __future__ import annotations

import re
import uuid

from playwright.async_api import Browser, Page, expect

from tests.e2e.conftest import AppServer, shot, unique_email
from tests.lifecycle_stack import Stack

PASSWORD = "correct horse battery"


def new_token() -> str:
    return f"{uuid.uuid4().int % 10**9 + 10**8}:AA{uuid.uuid4().hex}{uuid.uuid4().hex[:6]}"


async def sign_up_and_create(page: Page, name: str) -> None:
    """Sign up and pass the plan step (billing off)."""
    await page.goto("/")
    await page.get_by_role("link", name="Sign up").click()
    await page.get_by_label("Email").fill(unique_email())
    await page.get_by_label("Password").fill(PASSWORD)
    await page.locator("#accept-terms").check()
    await page.get_by_role("button", name="Sign up").click()
    await expect(
        page.get_by_role("heading", name="Name your bot and choose a plan")
    ).to_be_visible()
    await expect(page.get_by_text("Billing is off on this installation").first).to_be_visible()
    await page.get_by_label("Bot name").fill(name)
    await page.get_by_label("Starter").check()


async def test_new_user_reaches_a_live_bot_and_gets_a_reply(
    page: Page, server: AppServer, process_stack: Stack
) -> None:
    await sign_up_and_create(page, "Helpdesk")
    await shot(page, "01-plan")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("status")).to_contain_text("Billing is off")
    await shot(page, "02-telegram")
    token = new_token()
    process_stack.telegram.add_bot(token, username="helpdesk_bot")
    await page.get_by_label("Bot token").fill(token)
    await page.get_by_role("button", name="Check and connect").click()
    await expect(page.get_by_role("heading", name=re.compile("reach its model"))).to_be_visible()
    await shot(page, "03-model")
    await page.get_by_label("Managed").check()
    await page.get_by_role("button", name="Save and continue").click()
    await expect(page.get_by_text("One friendly assistant")).to_be_visible()
    await shot(page, "04-bundle")
    await page.get_by_role("radio", name=re.compile(r"Starter\s+v\d")).check()
    await page.get_by_role("button", name="Deploy").click()
    await expect(page.get_by_role("heading", name=re.compile("Deploying|is live"))).to_be_visible()
    await shot(page, "05-progress")
    live = page.locator("#bot-live")
    await expect(live).to_be_visible(timeout=60_000)
    await expect(page.locator("#bot-state")).to_have_text("healthy")
    steps = page.locator(".progress-steps li")
    await expect(steps.filter(has_text="Wait until the runtime reports healthy")).to_contain_text(
        "done"
    )
    await expect(live).to_contain_text("@helpdesk_bot")
    await page.get_by_label("Send a test message").fill("ping from the browser")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator("#bot-reply")).to_contain_text(
        "ping from the browser", timeout=30_000
    )
    await shot(page, "06-live")
    assert token not in await page.content()


async def test_pause_and_resume_from_the_dashboard(
    page: Page, server: AppServer, process_stack: Stack
) -> None:
    await sign_up_and_create(page, "Pausable")
    await page.get_by_role("button", name="Continue").click()
    token = new_token()
    process_stack.telegram.add_bot(token, username="pausable_bot")
    await page.get_by_label("Bot token").fill(token)
    await page.get_by_role("button", name="Check and connect").click()
    await page.get_by_role("button", name="Save and continue").click()
    await page.get_by_role("button", name="Deploy").click()
    await expect(page.locator("#bot-live")).to_be_visible(timeout=60_000)
    await page.get_by_role("link", name="Go to the bot's operations page").click()
    await expect(page.locator("#runtime-status")).to_contain_text("connected")
    await shot(page, "07-operations")
    await page.get_by_role("button", name="Pause", exact=True).click()
    await expect(page.locator("#live")).to_have_attribute("data-state", "paused", timeout=30_000)
    await expect(page.locator("#live")).to_have_attribute("data-settled", "yes")
    await shot(page, "08-paused")
    await page.get_by_role("button", name="Resume", exact=True).click()
    await expect(page.locator("#live")).to_have_attribute("data-state", "healthy", timeout=30_000)
    await expect(page.locator("#live")).to_have_attribute("data-settled", "yes")
    history = page.get_by_role("region", name="Action history")
    await page.reload()
    await expect(history).to_contain_text("pause")
    await expect(history).to_contain_text("resume")


async def test_a_bad_token_shows_the_error_on_the_page(page: Page, server: AppServer) -> None:
    await sign_up_and_create(page, "Typo bot")
    await page.get_by_role("button", name="Continue").click()
    await page.get_by_label("Bot token").fill(new_token())  # Telegram never issued it
    await page.get_by_role("button", name="Check and connect").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Telegram rejected this bot token")
    await expect(page.get_by_label("Bot token")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Bot token")).to_have_value("")
    await shot(page, "09-bad-token")
    await page.get_by_label("Bot token").fill("not a token")
    await page.get_by_role("button", name="Check and connect").click()
    await expect(page.get_by_role("alert")).to_contain_text(
        "does not look like a Telegram bot token"
    )


async def test_sandbox_journey_without_a_real_token(
    browser: Browser, sandbox_server: AppServer
) -> None:
    context = await browser.new_context(base_url=sandbox_server.url)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    await sign_up_and_create(page, "Sandbox buddy")
    await expect(page.get_by_role("note")).to_contain_text("Sandbox")
    await page.get_by_role("button", name="Continue").click()
    await page.get_by_role("button", name="Generate a sandbox bot token").click()
    await page.get_by_role("button", name="Save and continue").click()
    await page.get_by_role("button", name="Deploy").click()
    await expect(page.locator("#bot-live")).to_be_visible(timeout=60_000)
    await page.get_by_role("link", name=re.compile("Open the sandbox chat")).click()
    await expect(
        page.get_by_role("heading", name=re.compile("Chat with @sandbox_"))
    ).to_be_visible()
    await page.get_by_role("textbox", name="Message").fill("hello sandbox")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator(".chat-log .bubble.bot")).to_contain_text(
        "hello sandbox", timeout=30_000
    )
    await shot(page, "10-sandbox-chat")
    await context.close()

"""The production configuration, end to end, in headless Chromium on the Docker driver.

Billing on against the Stripe fake, the operator's provider (a fake that lists models)
behind the real gateway, the Telegram fake with three users (the owner, a stranger who is
approved, a stranger who is not). Sign up, Pro, token, a managed model, bundle, pay, live;
pairing; a restart keeps the approval; an upgrade and a downgrade from Stripe change the
container's limits and the gateway's policy; BYOK answers from the tenant's provider with
the tenant's key; cancelling suspends and "Subscribe again" brings the bot back.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from playwright.async_api import Error as PlaywrightError
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from api.billing import STRIPE_EXTRA
from core import credentials as creds
from core.db.models import Tenant
from core.model_catalog import CatalogModel
from core.plans import get_plan
from gateway.app import create_app as create_gateway
from tests.conftest import free_port
from tests.e2e.conftest import AppServer, shot, unique_email
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.stripe_api import FakeStripe, signed
from tests.fakes.telegram import FakeTelegram
from tests.lifecycle_stack import Stack, cleanup_tenants, start_stack
from tests.workflows.test_provider_docker import (
    OWN_IMAGE,
    HostServer,
    build_own_image,
    own_image_catalog,
)

pytestmark = [pytest.mark.docker, pytest.mark.browser]

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "scripts/build-runtime-image.sh"
PASSWORD = "correct horse battery"
PLATFORM_KEY = "sk-platform-journey-key-000001"
TENANT_KEY = "sk-tenant-journey-own-key-0001"
PRICES = {"starter": "price_starter", "pro": "price_pro", "business": "price_business"}
WEBHOOK_SECRET = "whsec_production_journey_0001"
OWNER, STRANGER, OTHER = 610001, 620002, 630003
CODE = re.compile(r"\b([A-Z0-9]{4}-[A-Z0-9]{4})\b")


def catalog() -> list[CatalogModel]:
    """Two models for Pro, a third only Business may call (the gateway policy we watch)."""

    def model(mid: str, upstream: str, plans: tuple[str, ...], roles: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
        return CatalogModel(
            id=mid, upstream_model=upstream, input_per_m=Decimal("1"),
            output_per_m=Decimal("2"), plans=plans, roles=roles,
        )  # fmt: skip

    return [
        model("house/fast", "up-fast", ("starter", "pro", "business"), ("default", "fast")),
        model("house/smart", "up-smart", ("pro", "business")),
        model("house/max", "up-max", ("business",)),
    ]


@dataclass
class Prod:
    stack: Stack
    app: AppServer
    stripe: FakeStripe
    provider: FakeOpenAI
    own: FakeOpenAI  # the tenant's own (BYOK) provider
    gateway_url: str

    @property
    def telegram(self) -> FakeTelegram:
        return self.stack.telegram

    async def webhook(self, *events: dict[str, Any]) -> None:
        """Deliver Stripe's events to the app, signed as Stripe signs them."""
        async with httpx.AsyncClient(base_url=self.app.url, timeout=30) as http:
            for event in events:
                body, header = signed(event, WEBHOOK_SECRET)
                r = await http.post(
                    "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
                )
                assert r.status_code == 200, r.text


@pytest.fixture
async def prod(
    tmp_path: Path, temporal_env: WorkflowEnvironment, fakes: tuple[FakeTelegram, FakeOpenAI],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Prod]:  # fmt: skip
    if os.environ.get("TCC_SKIP_DOCKER") == "1":
        pytest.skip("TCC_SKIP_DOCKER=1")
    await build_own_image()
    monkeypatch.setenv("TCC_GATEWAY_AUTH_CACHE_TTL_S", "0")  # plan changes reach it at once
    provider = FakeOpenAI(api_key=PLATFORM_KEY, models=["up-fast", "up-smart", "up-max"]).start()
    own = FakeOpenAI(api_key=TENANT_KEY, models=["tenant-model-a", "tenant-model-b"]).start()
    stripe = FakeStripe(prices={price: plan for plan, price in PRICES.items()}).start()
    port = free_port()
    try:
        async for stack in start_stack(
            tmp_path, temporal_env, fakes, "docker", catalog=own_image_catalog(tmp_path),
            runtime_image=OWN_IMAGE, runtime_warm_fences=2,  # as the compose stack runs
        ):  # fmt: skip
            s = stack.ctx.settings
            s.gateway_public_url = f"http://127.0.0.1:{port}/v1"
            s.upstream_urls, s.upstream_api_key = [provider.base_url], SecretStr(PLATFORM_KEY)
            s.model_catalog = catalog()
            s.stripe_secret_key, s.stripe_api_base = SecretStr(stripe.api_key), stripe.url
            s.stripe_webhook_secret, s.stripe_price_ids = SecretStr(WEBHOOK_SECRET), PRICES
            stack.ctx.extras.pop(STRIPE_EXTRA, None)
            gateway = create_gateway(s, stack.db, stack.ctx.secrets)
            app = AppServer(stack)
            try:
                with HostServer(gateway, port):
                    app.start()
                    yield Prod(stack, app, stripe, provider, own, s.gateway_public_url)
            finally:
                app.stop()
                with stack.db.system_session() as session:
                    tids = list(session.scalars(select(Tenant.id)))
                await asyncio.to_thread(cleanup_tenants, tids)
    finally:
        for fake in (provider, own, stripe):
            fake.stop()


async def wait_for(
    what: str,
    check: Callable[[], Awaitable[Any]],
    timeout: float = 90,  # noqa: ASYNC109 (a poll deadline that reports the last value)
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what}: not reached in {timeout}s (last: {last!r})")


async def ask(prod: Prod, token: str, user: int, text: str, replies_before: int) -> str:
    """Send ``text`` as Telegram ``user`` and return the bot's next reply to them."""
    prod.telegram.inject_message(token, user, text, from_id=user, first_name=f"user{user}")
    sent = await asyncio.to_thread(
        prod.telegram.wait_for_messages, token, user, replies_before + 1, 60.0
    )
    return str(sent[replies_before]["text"])


def container(tid: str) -> dict[str, Any]:
    client = docker.from_env()
    try:
        return client.containers.get(f"tcc-tenant-{tid}").attrs  # type: ignore[no-any-return]
    finally:
        client.close()


def limits_of(tid: str) -> tuple[int, int]:
    """(memory bytes, nano CPUs) of the tenant's running container."""
    host = container(tid)["HostConfig"]
    return int(host["Memory"]), int(host["NanoCpus"])


def plan_limits(plan: str) -> tuple[int, int]:
    p = get_plan(plan)
    return p.memory_mb * 1024 * 1024, int(p.cpus * 1_000_000_000)


async def gateway_models(prod: Prod, tid: str) -> set[str]:
    """What the gateway lets this tenant call now (its policy for the tenant's plan)."""
    token = creds.read_secret(prod.stack.db, prod.stack.ctx.secrets, tid, creds.GATEWAY_TOKEN)
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(
            f"{prod.gateway_url}/models", headers={"Authorization": f"Bearer {token}"}
        )
    assert r.status_code == 200, r.text
    return {m["id"] for m in r.json()["data"]}


async def visit(page: Page, path: str) -> None:
    """Open ``path``; a page still polling may reload itself (htmx ``HX-Refresh`` once its
    action settles) just as we navigate, which aborts our navigation: then go again."""
    for attempt in range(3):
        try:
            await page.goto(path)
            return
        except PlaywrightError as exc:
            if "ERR_ABORTED" not in str(exc) or attempt == 2:
                raise


async def live_state(page: Page, tid: str, state: str) -> None:
    """Wait on the bot page until nothing is in flight and the bot is in ``state``."""
    await visit(page, f"/app/bots/{tid}")
    live = page.locator("#live")
    await expect(live).to_have_attribute("data-state", state, timeout=120_000)
    await expect(live).to_have_attribute("data-settled", "yes", timeout=120_000)


async def pay(prod: Prod, page: Page) -> None:
    """The browser is at the fake Checkout: Stripe takes the payment, sends its webhooks,
    and sends the customer back to the success URL."""
    await page.wait_for_url(re.compile(re.escape(prod.stripe.url) + r"/checkout/pay/"))
    session_id = page.url.rsplit("/", 1)[1]
    session = prod.stripe.checkout_sessions[session_id]
    await prod.webhook(*prod.stripe.complete_checkout(session_id))
    await visit(page, str(session["success_url"]))


async def test_production_journey(browser: Browser, prod: Prod) -> None:
    context = await browser.new_context(
        base_url=prod.app.url, viewport={"width": 1200, "height": 900}
    )
    page = await context.new_page()
    page.set_default_timeout(30_000)
    try:
        await journey(page, prod)
    finally:
        await context.close()


async def journey(page: Page, prod: Prod) -> None:
    token = f"{uuid.uuid4().int % 10**9 + 10**8}:AA{uuid.uuid4().hex}{uuid.uuid4().hex[:6]}"
    prod.telegram.add_bot(token, username="journey_bot")

    # Sign up, Pro, token, a managed model, bundle, pay.
    await page.goto("/app/signup")
    await page.get_by_label("Email").fill(unique_email())
    await page.get_by_label("Password").fill(PASSWORD)
    await page.locator("#accept-terms").check()
    await page.get_by_role("button", name="Sign up").click()
    await expect(page.get_by_text("You pay at the last step")).to_be_visible()
    await page.get_by_label("Bot name").fill("Journey")
    await page.locator("#plan-pro").check()
    await page.get_by_role("button", name="Continue").click()
    await page.get_by_label("Bot token").fill(token)
    await page.locator("#owner_telegram_id").fill(str(OWNER))
    await page.get_by_role("button", name="Check and connect").click()
    await expect(page.get_by_role("heading", name=re.compile("reach its model"))).to_be_visible()
    tid = re.search(r"/app/bots/([0-9a-f]{32})/", page.url).group(1)  # type: ignore[union-attr]
    await page.locator("#mode-managed").check()
    await page.locator("#managed_model").select_option("house/smart")
    await page.get_by_role("button", name="Save and continue").click()
    await page.get_by_role("radio", name=re.compile(r"Starter\s+v\d")).check()
    await shot(page, "prod-01-bundle")
    await page.get_by_role("button", name="Pay and deploy").click()
    await pay(prod, page)
    await expect(page.locator("#bot-live")).to_be_visible(timeout=180_000)
    await shot(page, "prod-02-live")

    # The owner is answered by the provider's model (the one chosen), with the platform key.
    prod.provider.script("managed answer", model="up-smart")
    assert await ask(prod, token, OWNER, "hello bot", 0) == "managed answer"
    call = prod.provider.completions()[-1]
    assert (call.body["model"], call.authorization) == ("up-smart", f"Bearer {PLATFORM_KEY}")

    # A stranger gets a pairing code; the owner approves it on the bot page.
    first = await ask(prod, token, STRANGER, "hi, who are you?", 0)
    code = CODE.search(first)
    assert code, first
    other = await ask(prod, token, OTHER, "me too", 0)
    assert CODE.search(other) and "managed answer" not in other
    await visit(page, f"/app/bots/{tid}")
    pending = page.locator(".pairing-pending li", has_text=code.group(1))
    await expect(pending).to_be_visible()
    await pending.get_by_role("button", name="Approve").click()
    await expect(page.locator(".pairing-approved")).to_contain_text(f"id {STRANGER}")
    await shot(page, "prod-03-approved")
    assert await ask(prod, token, STRANGER, "and now?", 1) == "managed answer"

    # Still approved after a restart (approvals live in the control plane).
    await page.get_by_role("button", name="Restart", exact=True).click()
    await live_state(page, tid, "healthy")
    assert await ask(prod, token, STRANGER, "after the restart", 2) == "managed answer"
    assert len(prod.telegram.sent_messages(token, OTHER)) == 1  # never approved: no answer

    # The bot page counts the answered calls against the Pro plan's quota and budget.
    async def counted() -> str | None:
        await visit(page, f"/app/bots/{tid}")
        text = await page.locator("#usage-messages").inner_text()
        return text if re.match(r"\s*[3-9] of 20,000", text) else None

    await wait_for("usage on the bot page", counted, timeout=30)
    await expect(page.locator("#usage-spend")).to_contain_text("of $40.00")

    # Upgrade and downgrade in the portal: Stripe's subscription.updated changes the
    # container's limits and what the gateway lets the bot call.
    assert limits_of(tid) == plan_limits("pro")
    assert "house/max" not in await gateway_models(prod, tid)
    [sub_id] = list(prod.stripe.subscriptions)
    for plan in ("business", "pro"):
        if plan == "business":  # the upgrade from the bot page: Stripe is asked, then says so
            await visit(page, f"/app/bots/{tid}")
            await page.locator("#plan-choice").select_option(plan)
            await page.get_by_role("button", name="Change plan").click()
            await expect(page.locator("#plan-outcome")).to_contain_text("Stripe is moving")
            assert (
                prod.stripe.subscriptions[sub_id]["items"]["data"][0]["price"]["id"]
                == (PRICES[plan])
            )
            await prod.webhook(prod.stripe.outbox.pop())
        else:  # the downgrade in the Customer Portal: only Stripe's event tells us
            await visit(page, f"/app/bots/{tid}")
            await page.get_by_role("button", name="Manage payment and plan").click()
            await page.wait_for_url(re.compile(re.escape(prod.stripe.url) + r"/portal/"))
            await prod.webhook(prod.stripe.update_subscription(sub_id, price=PRICES[plan]))

        async def applied(plan: str = plan) -> bool:
            try:
                attrs = await asyncio.to_thread(container, tid)
            except docker.errors.NotFound:  # being recreated with the new limits right now
                return False
            host = attrs["HostConfig"]
            limits = (int(host["Memory"]), int(host["NanoCpus"]))
            return bool(attrs["State"]["Running"]) and limits == plan_limits(plan)

        await wait_for(f"the container on the {plan} plan's limits", applied)
        await live_state(page, tid, "healthy")
        assert limits_of(tid) == plan_limits(plan)
        assert ("house/max" in await gateway_models(prod, tid)) is (plan == "business")
        await expect(page.locator(".page-head")).to_contain_text(f"plan {plan}")
    await shot(page, "prod-04-plans")

    # BYOK with a chosen model: the tenant's provider answers, with the tenant's key.
    prod.own.script("own provider answer", model="tenant-model-b")
    await visit(page, f"/app/bots/{tid}/setup/model")
    await page.locator("#mode-byok").check()
    await page.locator("#provider").select_option("custom")
    await page.locator("#api_key").fill(TENANT_KEY)
    await page.locator("#base_url").fill(prod.own.base_url)
    await page.locator("#model").fill("tenant-model-b")
    await page.get_by_role("button", name="Save and continue").click()
    await live_state(page, tid, "healthy")
    replies = len(prod.telegram.sent_messages(token, OWNER))
    assert await ask(prod, token, OWNER, "now with my key", replies) == "own provider answer"
    mine = prod.own.completions()[-1]
    assert (mine.body["model"], mine.authorization) == ("tenant-model-b", f"Bearer {TENANT_KEY}")
    assert all(TENANT_KEY not in (c.authorization or "") for c in prod.provider.completions())
    assert TENANT_KEY not in await page.content()

    # Cancelling suspends; "Subscribe again" on the bot page brings the bot back.
    await prod.webhook(prod.stripe.cancel_subscription(sub_id))
    await live_state(page, tid, "suspended")
    await expect(page.locator("#subscribe-again")).to_be_visible()
    await shot(page, "prod-05-suspended")
    await page.locator("#subscribe-plan").select_option("pro")
    await page.locator("#subscribe-again").click()
    await pay(prod, page)
    await live_state(page, tid, "healthy")
    replies = len(prod.telegram.sent_messages(token, OWNER))
    assert await ask(prod, token, OWNER, "are you back?", replies) == "own provider answer"
    await shot(page, "prod-06-back")

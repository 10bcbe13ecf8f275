"""A failed payment (Stripe's ``invoice.payment_failed``) reaches the bot's owner once, by
email and in their chat with the bot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from core.context import AppContext
from core.credentials import TELEGRAM, store_credential
from core.db import Database
from core.db.models import Notice, User
from core.temporal import TaskQueues
from core.tenants import create_tenant
from tests.billing.conftest import PRICES, WEBHOOK_SECRET, RecordingDispatcher, billing_app
from tests.billing.test_webhooks import _checkout
from tests.conftest import make_settings
from tests.fakes.smtp import Inbox
from tests.fakes.stripe_api import FakeStripe, signed
from tests.fakes.telegram import FakeTelegram

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")
BOT_TOKEN = "987654321:AA" + "c" * 33
OWNER_CHAT = 777


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram()
    fake.start()
    fake.add_bot(BOT_TOKEN, "billing_bot")
    yield fake
    fake.stop()


async def test_a_failed_payment_is_told_to_the_owner_once(
    tmp_path: Path, db: Database, fake_stripe: FakeStripe, smtp: tuple[Inbox, int],
    telegram: FakeTelegram,
) -> None:  # fmt: skip
    inbox, port = smtp
    settings = make_settings(
        tmp_path, stripe_secret_key=SecretStr(fake_stripe.api_key),
        stripe_webhook_secret=SecretStr(WEBHOOK_SECRET), stripe_api_base=fake_stripe.url,
        stripe_price_ids=PRICES, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
        telegram_api_base=telegram.base_url,
    )  # fmt: skip
    ctx = AppContext(settings=settings, db=db, temporal=None, queues=TaskQueues())  # type: ignore[arg-type]
    with db.system_session() as s:
        owner = User(email="payer@example.com", password_hash="x")
        s.add(owner)
        s.flush()
        tenant = create_tenant(s, owner_id=owner.id, name="Billing bot", plan="starter")
        tenant.telegram_owner_id = OWNER_CHAT
        tenant_id = tenant.id
    store_credential(db, ctx.secrets, tenant_id, TELEGRAM, BOT_TOKEN)
    events, sub_id = await _checkout(settings, fake_stripe, tenant_id)
    failed = fake_stripe.fail_payment(sub_id)
    transport = httpx.ASGITransport(app=billing_app(ctx, RecordingDispatcher()))
    async with httpx.AsyncClient(transport=transport, base_url="http://tcc.test") as c:

        async def post(event: dict) -> httpx.Response:
            body, header = signed(event, WEBHOOK_SECRET)
            headers = {"Content-Type": "application/json", "Stripe-Signature": header}
            return await c.post("/webhooks/stripe", content=body, headers=headers)

        assert (await post(events[0])).json()["status"] == "processed"
        assert (await post(failed)).json()["status"] == "processed"
        email = await inbox.wait_for(1, "payer@example.com")
        assert email["Subject"] == "Payment for Billing bot failed"
        chat = telegram.wait_for_messages(BOT_TOKEN, OWNER_CHAT, 1)
        assert "Payment for Billing bot failed" in chat[0]["text"]
        # Stripe redelivers the same event: deduplicated, nothing more is sent.
        assert (await post(failed)).json()["status"] == "duplicate"
        # Another failure soon after (the next retry of the charge): throttled.
        again = fake_stripe.fail_payment(sub_id)
        assert again["id"] != failed["id"]
        assert (await post(again)).json()["status"] == "processed"
    assert len(inbox.to("payer@example.com")) == 1
    assert len(telegram.sent_messages(BOT_TOKEN, OWNER_CHAT)) == 1
    with db.system_session() as s:
        got = sorted((n.kind, n.status) for n in s.query(Notice))
    assert got == [("payment_failed", "sent"), ("payment_failed", "throttled")]

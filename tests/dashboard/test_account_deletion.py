"""Account deletion from the dashboard (issue 17), billing on: the owner confirms with email
and password, every bot they own goes through the delete workflow, the personal data is
erased, and the page says what is kept for billing law."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from sqlalchemy import select

from core.billing.service import current_subscription
from core.db.models import ApiToken, OrgMembership, Tenant, User
from tests.dashboard.conftest import PASSWORD, bot_token, new_bot, sign_up, wait_settled
from tests.dashboard.test_billing_on import WEBHOOK_SECRET, billing_on  # noqa: F401 (fixture)
from tests.fakes.stripe_api import FakeStripe, signed
from tests.lifecycle_stack import Stack
from worker import lifecycle_activities


async def paid_live_bot(
    b: object, browsers: Callable[[], httpx.AsyncClient], fake: FakeStripe, stack: Stack
) -> str:
    """A bot paid through the fake Stripe Checkout and running."""
    tid = await new_bot(b, "Doomed bot", plan="pro")  # type: ignore[arg-type]
    token = bot_token()
    stack.telegram.add_bot(token, username=f"doomed_{tid[:6]}")
    assert (await b.post(f"/app/bots/{tid}/setup/telegram", {"token": token})).status_code == 303  # type: ignore[attr-defined]
    assert (await b.post(f"/app/bots/{tid}/setup/model", {"mode": "managed"})).status_code == 303  # type: ignore[attr-defined]
    r = await b.post(f"/app/bots/{tid}/deploy", {"bundle_id": "pro"})  # type: ignore[attr-defined]
    assert r.status_code == 303, r.text
    [session] = [s for s in fake.checkout_sessions.values() if s["status"] == "open"]
    stripe = browsers()
    for event in fake.complete_checkout(session["id"]):
        body, header = signed(event, WEBHOOK_SECRET)
        resp = await stripe.post(
            "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
        )
        assert resp.status_code == 200, resp.text
    await wait_settled(b, tid, "healthy")  # type: ignore[arg-type]
    return tid


async def test_deleting_the_account_deletes_its_bots_and_erases_it(
    browsers: Callable[[], httpx.AsyncClient],
    billing_on: FakeStripe,  # noqa: F811 (the fixture)
    process_stack: Stack,
) -> None:
    b = await sign_up(browsers)
    tid = await paid_live_bot(b, browsers, billing_on, process_stack)
    with process_stack.db.tenant_session(tid) as s:
        sub_id = current_subscription(s, tid).stripe_subscription_id  # type: ignore[union-attr]
    assert billing_on.subscriptions[sub_id]["status"] == "active"
    await b.csrf_from("/app/account")

    wrong = await b.post(
        "/app/account/delete", {"confirm_email": "someone@else.example", "password": PASSWORD}
    )
    assert wrong.status_code == 422 and "Type your account" in wrong.text
    bad = await b.post("/app/account/delete", {"confirm_email": b.email, "password": "nope" * 3})
    assert bad.status_code == 401
    with process_stack.db.system_session() as s:
        assert s.scalars(select(User).where(User.email == b.email)).one().deleted_at is None

    done = await b.post("/app/account/delete", {"confirm_email": b.email, "password": PASSWORD})
    assert done.status_code == 200, done.text
    assert 'id="account-deleted"' in done.text and "1 bot is being deleted" in done.text
    assert "invoices and payment records" in done.text

    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        with process_stack.db.system_session() as s:
            if s.get(Tenant, tid).deleted_at is not None:  # type: ignore[union-attr]
                break
        await asyncio.sleep(0.3)
    else:
        raise AssertionError("the bot was never deleted")
    assert tid not in lifecycle_activities(process_stack.ctx).driver.list_tenants()
    # A deleted bot is billed no more: the delete cancelled its subscription at Stripe.
    assert billing_on.subscriptions[sub_id]["status"] == "canceled"

    with process_stack.db.system_session() as s:
        erased = s.scalars(select(User).where(User.email == b.email)).first()
        assert erased is None  # the email is gone from the database
        users = s.scalars(select(User).where(User.deleted_at.is_not(None))).all()
        [user] = [u for u in users if u.email.endswith("@erased.invalid")][-1:]
        assert user.display_name is None and user.totp_secret_ref is None
        assert s.scalars(select(ApiToken).where(ApiToken.user_id == user.id)).all() == []
        assert s.scalars(select(OrgMembership).where(OrgMembership.user_id == user.id)).all() == []
    # The browser's session is over, and the address can sign up again.
    assert (await b.client.get("/app")).status_code == 303
    again = await sign_up(browsers, b.email)
    assert again.email == b.email

"""Deleting is complete: the bot leaves the customer's list, and its personal data is purged."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from core.activity_models import PurgeInput
from core.db.models import AuditLog, Credential, Tenant
from tests.api.conftest import Client
from tests.api.test_commands_under_misuse import live_bot
from tests.api.test_support_signals import admin_headers
from tests.api.test_tenants_flow import wait_state
from tests.lifecycle_stack import Stack
from worker import lifecycle_activities


async def test_a_deleted_bot_leaves_the_list_and_its_personal_data_is_purged(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    admin = await admin_headers(api, process_stack, "dpo@example.com")
    tid, h = await live_bot(api, process_stack, tokens, "leaver@example.com")
    r = await api.post(f"/tenants/{tid}/delete", json={"confirm_name": "Busy bot"}, headers=h)
    assert r.status_code == 202, r.text
    await wait_state(api, tid, h, "deleted")

    assert tid not in [t["id"] for t in (await api.get("/tenants", headers=h)).json()]
    seen = {t["id"]: t for t in (await api.get("/admin/tenants", headers=admin)).json()}
    assert seen[tid]["state"] == "deleted" and seen[tid]["deleted_at"] is not None

    # What the retention timer runs once the period is over.
    acts = lifecycle_activities(process_stack.ctx)
    await ActivityEnvironment().run(acts.purge_backups, PurgeInput(tenant_id=tid))
    with process_stack.db.system_session() as s:
        tenant = s.get(Tenant, tid)
        assert tenant is not None and tenant.deleted_at is not None
        assert tenant.name == "Deleted bot" and tenant.telegram_bot_username is None
        assert s.scalars(select(Credential).where(Credential.tenant_id == tid)).all() == []
        details = s.scalars(select(AuditLog.detail).where(AuditLog.tenant_id == tid)).all()
        assert details and all(d is None for d in details)

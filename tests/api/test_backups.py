"""Tenant backups through the API (issue 14): take one, list them, restore one, roll back.

Real workflows on the Temporal dev server, the process driver, the real runtime.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy import select

from core.db.models import Tenant, TenantBackup
from tests.api.conftest import Client, signup
from tests.api.test_commands_under_misuse import live_bot
from tests.api.test_tenants_flow import wait_state
from tests.lifecycle_stack import Stack


async def _say(api: Client, tid: str, h: dict[str, str], text: str) -> None:
    r = await api.post(f"/tenants/{tid}/messages", json={"text": text}, headers=h)
    assert r.status_code == 200, r.text


async def _texts(api: Client, tid: str, h: dict[str, str]) -> list[str]:
    r = await api.get(f"/tenants/{tid}/conversations", headers=h)
    assert r.status_code == 200, r.text
    return [m["text"] for c in r.json()["conversations"] for m in c["messages"]]


async def _backed_up(api: Client, tid: str, h: dict[str, str], bid: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = (await api.get(f"/tenants/{tid}/backups", headers=h)).json()
        found = [b for b in listed if b["id"] == bid]
        if found:
            return found[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"backup {bid} never appeared")


async def _last_action(api: Client, tid: str, h: dict[str, str]) -> dict:
    body = await wait_state(api, tid, h, "healthy")
    return body["workflow"]["history"][-1]


async def test_backup_then_restore_brings_the_conversation_back(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    tid, h = await live_bot(api, process_stack, tokens, "keeper@example.com")
    await _say(api, tid, h, "the first words")

    r = await api.post(f"/tenants/{tid}/backups", headers=h)
    assert r.status_code == 202, r.text
    bid = r.json()["backup_id"]
    listed = await _backed_up(api, tid, h, bid)
    assert listed["kind"] == "manual" and listed["size_bytes"] > 0
    assert set(listed) == {"id", "kind", "size_bytes", "created_at"}

    # Sealed on disk: mode 0600, no plaintext; the row records a hash, never the key.
    with process_stack.db.tenant_session(tid) as s:
        row = s.scalars(select(TenantBackup).where(TenantBackup.id == bid)).one()
        location, sha = row.location, row.sha256
    sealed = process_stack.ctx.settings.data_dir / "backups" / location
    assert sealed.stat().st_mode & 0o777 == 0o600
    assert b"the first words" not in sealed.read_bytes() and len(sha) == 64

    await _say(api, tid, h, "words said after the backup")
    assert "words said after the backup" in await _texts(api, tid, h)

    r = await api.post(f"/tenants/{tid}/restore", json={"backup_id": bid}, headers=h)
    assert r.status_code == 202, r.text
    assert r.json()["action"] == "restore"
    last = await _last_action(api, tid, h)
    assert last["action"] == "restore" and last["status"] == "succeeded", last
    texts = await _texts(api, tid, h)
    assert "the first words" in texts and "words said after the backup" not in texts

    # The state before the restore was kept, so the restore can itself be undone.
    kinds = [b["kind"] for b in (await api.get(f"/tenants/{tid}/backups", headers=h)).json()]
    assert kinds.count("pre-restore") == 1 and kinds.count("manual") == 1


async def test_a_restore_that_fails_rolls_back_to_the_state_before(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    tid, h = await live_bot(api, process_stack, tokens, "unlucky@example.com")
    bid = (await api.post(f"/tenants/{tid}/backups", headers=h)).json()["backup_id"]
    await _backed_up(api, tid, h, bid)
    await _say(api, tid, h, "kept through a failed restore")
    with process_stack.db.tenant_session(tid) as s:
        location = s.scalars(select(TenantBackup.location).where(TenantBackup.id == bid)).one()
    damaged = process_stack.ctx.settings.data_dir / "backups" / location
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")

    r = await api.post(f"/tenants/{tid}/restore", json={"backup_id": bid}, headers=h)
    assert r.status_code == 202, r.text
    last = await _last_action(api, tid, h)
    assert last["status"] == "failed" and "back as it was" in last["reason"], last
    assert "kept through a failed restore" in await _texts(api, tid, h)


async def test_backups_are_paginated_scoped_and_rate_limited(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    tid, h = await live_bot(api, process_stack, tokens, "lister@example.com")
    ids = []
    for _ in range(3):
        r = await api.post(f"/tenants/{tid}/backups", headers=h)
        assert r.status_code == 202, r.text
        ids.append(r.json()["backup_id"])
        await _backed_up(api, tid, h, ids[-1])

    first = await api.get(f"/tenants/{tid}/backups?limit=2", headers=h)
    assert [b["id"] for b in first.json()] == ids[::-1][:2]
    assert 'rel="next"' in first.headers["link"]
    second = await api.get(
        f"/tenants/{tid}/backups?limit=2&cursor={first.headers['x-next-cursor']}", headers=h
    )
    assert [b["id"] for b in second.json()] == [ids[0]] and "link" not in second.headers
    bad = await api.get(f"/tenants/{tid}/backups?cursor=nonsense", headers=h)
    assert bad.status_code == 422

    # Another customer sees nothing of this bot's backups and cannot restore them.
    other = await signup(api, "nosy@example.com")
    their = (await api.post("/tenants", json={"name": "Nosy"}, headers=other)).json()["id"]
    assert (await api.get(f"/tenants/{tid}/backups", headers=other)).status_code in (403, 404)
    r = await api.post(f"/tenants/{their}/restore", json={"backup_id": ids[0]}, headers=other)
    assert r.status_code == 404 and r.json()["code"] == "backup_not_found"
    # A bot with nothing deployed has nothing to back up.
    assert (await api.post(f"/tenants/{their}/backups", headers=other)).status_code == 409

    # Five manual backups an hour per bot: the sixth waits.
    codes = [(await api.post(f"/tenants/{tid}/backups", headers=h)).status_code for _ in range(3)]
    assert codes == [202, 202, 429]


async def test_a_deleted_bot_restored_within_retention_gets_its_conversation_back(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    tid, h = await live_bot(api, process_stack, tokens, "regretful@example.com")
    await _say(api, tid, h, "remember this after deletion")
    r = await api.delete(f"/tenants/{tid}", headers={**h, "Confirm-Name": "Busy bot"})
    assert r.status_code == 202, r.text
    await wait_state(api, tid, h, "deleted")
    assert tid not in [t["id"] for t in (await api.get("/tenants", headers=h)).json()]

    (final,) = (await api.get(f"/tenants/{tid}/backups", headers=h)).json()
    assert final["kind"] == "deletion"
    r = await api.post(f"/tenants/{tid}/restore", json={"backup_id": final["id"]}, headers=h)
    assert r.status_code == 202, r.text
    body = await wait_state(api, tid, h, "pending")
    assert body["workflow"]["history"][-1]["status"] == "succeeded", body["workflow"]
    assert tid in [t["id"] for t in (await api.get("/tenants", headers=h)).json()]
    # The workflow saves its state (the purge is off) just after the restore settles.
    for _ in range(100):
        with process_stack.db.system_session() as s:
            purge_at = s.get(Tenant, tid).purge_at  # type: ignore[union-attr]
        if purge_at is None:
            break
        await asyncio.sleep(0.1)
    assert purge_at is None

    # The bot token was deleted with the bot: connect one again, deploy, and the chat is back.
    token = tokens()
    process_stack.telegram.add_bot(token, username=f"r{tid[:8]}")
    assert (await api.put(f"/tenants/{tid}/telegram", json={"token": token}, headers=h)).is_success
    assert (await api.post(f"/tenants/{tid}/deploy", headers=h)).status_code == 202
    await wait_state(api, tid, h, "healthy")
    assert "remember this after deletion" in await _texts(api, tid, h)

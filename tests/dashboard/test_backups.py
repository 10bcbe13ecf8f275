"""The bot page's backups (issue 14): back up now, see it listed, restore after confirming."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx

from tests.dashboard.conftest import live_bot, sign_up, wait_settled
from tests.lifecycle_stack import Stack

BACKUP_ROW = re.compile(r'data-backup="([0-9a-f]{32})"')


async def test_owner_backs_up_and_restores_from_the_bot_page(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    b = await sign_up(browsers)
    tid, _ = await live_bot(b, process_stack, "Backed-up bot")
    await b.csrf_from(f"/app/bots/{tid}")
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "Backups" in page and f"/app/bots/{tid}/backups" in page
    assert "No backups yet." in (await b.client.get(f"/app/bots/{tid}/backups")).text

    r = await b.post(f"/app/bots/{tid}/backups")
    assert r.status_code == 200 and "Backup started" in r.text
    fragment = ""
    for _ in range(100):
        fragment = (await b.client.get(f"/app/bots/{tid}/backups")).text
        if BACKUP_ROW.search(fragment):
            break
        await asyncio.sleep(0.2)
    bid = BACKUP_ROW.findall(fragment)[0]
    assert "manual" in fragment and "Yes, restore" not in fragment

    # Restore asks first, in place; the form appears only for the backup clicked.
    asking = (await b.client.get(f"/app/bots/{tid}/backups?confirm={bid}")).text
    assert "Yes, restore" in asking and 'name="backup_id" value="' + bid in asking
    r = await b.post(f"/app/bots/{tid}/backups/restore", {"backup_id": bid})
    assert r.status_code == 200 and "Restore started" in r.text, r.text
    await asyncio.sleep(0.5)
    await wait_settled(b, tid, "healthy")
    kinds = (await b.client.get(f"/app/bots/{tid}/backups")).text
    assert "pre-restore" in kinds

    r = await b.post(f"/app/bots/{tid}/backups/restore", {"backup_id": "0" * 32})
    assert "There is no such backup of this bot." in r.text

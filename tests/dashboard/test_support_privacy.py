"""Support notes, support audit entries and Temporal links are for platform admins only;
the kill switch needs a confirmation and a reason."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from core.db.models import User
from tests.dashboard.conftest import Browser, live_bot, sign_up
from tests.lifecycle_stack import Stack

NOTE = "customer called about invoice 8841, suspect chargeback"


async def _admin(browsers: Callable[[], httpx.AsyncClient], stack: Stack) -> Browser:
    admin = await sign_up(browsers)
    with stack.db.system_session() as s:
        s.query(User).filter(User.email == admin.email).update({"is_platform_admin": True})
    await admin.csrf_from("/app/admin")
    return admin


async def _api(b: Browser, method: str, url: str, **kw: object) -> httpx.Response:
    return await b.client.request(method, url, headers={"X-CSRF-Token": b.csrf}, **kw)  # type: ignore[arg-type]


async def test_notes_and_support_entries_are_for_admins_only(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    owner = await sign_up(browsers)
    tid, _ = await live_bot(owner, process_stack, "Private bot")
    admin = await _admin(browsers, process_stack)
    r = await _api(
        admin, "POST", f"/admin/tenants/{tid}/signals", json={"signal": "add_note", "reason": NOTE}
    )
    assert r.status_code == 202, r.text
    seen: dict = {}
    for _ in range(50):  # the signal is applied asynchronously
        seen = (await _api(admin, "GET", f"/tenants/{tid}")).json()
        if seen["workflow"]["notes"]:
            break
        await asyncio.sleep(0.1)
    assert seen["workflow"]["notes"][0]["text"] == NOTE
    assert seen["temporal_ui_url"]

    mine = (await _api(owner, "GET", f"/tenants/{tid}")).json()
    assert mine["workflow"]["notes"] == []
    assert mine["temporal_ui_url"] is None
    assert admin.email not in str(mine) and NOTE not in str(mine)

    page = (await owner.client.get(f"/app/bots/{tid}")).text
    assert NOTE not in page and admin.email not in page
    assert "Support note" not in page and "Temporal Web UI" not in page
    staff_page = (await admin.client.get(f"/app/bots/{tid}")).text
    assert "Support note" in staff_page and "Temporal Web UI" in staff_page


async def test_kill_switch_needs_confirmation_and_reason(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    owner = await sign_up(browsers)
    tid, _ = await live_bot(owner, process_stack, "Kill me bot")
    admin = await _admin(browsers, process_stack)
    url = f"/admin/tenants/{tid}/signals"
    for body, code in (
        ({"signal": "kill_switch", "reason": "abuse report 17"}, "confirmation_required"),
        ({"signal": "kill_switch", "confirm": True}, "reason_required"),
        ({"signal": "kill_switch", "confirm": True, "reason": "  "}, "reason_required"),
    ):
        r = await _api(admin, "POST", url, json=body)
        assert (r.status_code, r.json()["code"]) == (422, code), r.text
    form = await admin.post(f"/app/admin/tenants/{tid}/signal", {"signal": "kill_switch"})
    assert form.status_code == 422 and "confirm" in form.text.lower()
    assert "kill switch on" not in (await owner.client.get(f"/app/bots/{tid}/live")).text

    ok = await _api(
        admin, "POST", url, json={"signal": "kill_switch", "confirm": True, "reason": "abuse 17"}
    )
    assert ok.status_code == 202, ok.text
    form = await admin.post(
        f"/app/admin/tenants/{tid}/signal",
        {"signal": "kill_switch", "confirm": "yes", "reason": "abuse 17"},
    )
    assert form.status_code == 303

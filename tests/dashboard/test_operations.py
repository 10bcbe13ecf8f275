"""Operations from the dashboard: confirmations, a bundle switch's result, deletion."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.dashboard.conftest import live_bot, sign_up, wait_settled
from tests.lifecycle_stack import Stack


def outcome(page: httpx.Response, section: str) -> str:
    """The outcome shown next to ``section``'s form (post/redirect/get), or ''."""
    marker = f'id="{section}-outcome"'
    assert page.status_code == 200, page.text
    return page.text.split(marker, 1)[1].split("</p>", 1)[0] if marker in page.text else ""


async def test_reset_switch_and_delete_show_their_results(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    b = await sign_up(browsers)
    tid, _ = await live_bot(b, process_stack, "Ops bot")
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "Usage this period" in page and "Billing is off" in page
    assert "Type the bot's name" in page and "data" in page.lower()

    r = await b.post(f"/app/bots/{tid}/reset", {})
    assert (r.status_code, r.headers["location"]) == (303, f"/app/bots/{tid}#reset-outcome")
    assert "confirm" in outcome(await b.client.get(f"/app/bots/{tid}"), "reset")
    r = await b.post(f"/app/bots/{tid}/reset", {"confirm": "yes"})
    assert (r.status_code, r.headers["location"]) == (303, f"/app/bots/{tid}#reset-outcome")
    assert "Reset queued" in outcome(await b.client.get(f"/app/bots/{tid}"), "reset")
    await wait_settled(b, tid, "healthy")

    # The Pro bundle is not on the Starter plan: refused with the reason, bot untouched.
    r = await b.post(f"/app/bots/{tid}/switch", {"bundle_id": "pro"})
    assert r.status_code == 303
    await wait_settled(b, tid, "healthy")
    history = (await b.client.get(f"/app/bots/{tid}")).text.split("Action history")[1]
    assert "switch bundle" in history
    assert "The Pro Crew bundle is not available on the Starter plan" in history
    assert 'data-state="healthy"' in (await b.client.get(f"/app/bots/{tid}/live")).text

    r = await b.post(f"/app/bots/{tid}/delete", {"confirm_name": "ops bot"})
    assert (r.status_code, r.headers["location"]) == (303, f"/app/bots/{tid}#delete-outcome")
    page = (await b.client.get(f"/app/bots/{tid}")).text
    delete_section = page.split('id="delete"')[1]
    assert 'id="delete-outcome"' in delete_section and "exact name" in delete_section
    # The outcome is shown once: a reload (or Back) shows the page without it.
    assert 'id="delete-outcome"' not in (await b.client.get(f"/app/bots/{tid}")).text
    r = await b.post(f"/app/bots/{tid}/delete", {"confirm_name": "Ops bot"})
    assert r.status_code == 303 and r.headers["location"] == "/app?notice=deleted"
    await wait_settled(b, tid, "deleted")

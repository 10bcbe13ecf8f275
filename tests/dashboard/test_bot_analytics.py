"""The bot page's analytics section: SVG charts on Pro, what unlocks them on Starter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx

from core.db.models import RuntimeLogLine, UsageEvent, utcnow
from tests.dashboard.conftest import new_bot, sign_up
from tests.lifecycle_stack import Stack


async def test_a_pro_bot_page_charts_messages_agents_and_hand_offs(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    b = await sign_up(browsers)
    pro = await new_bot(b, "Team bot", plan="pro")
    starter = await new_bot(b, "Solo bot", plan="starter")
    with process_stack.db.tenant_session(pro) as s:
        s.add_all([
            UsageEvent(tenant_id=pro, model="m", agent="coder", outcome="ok", latency_ms=120),
            UsageEvent(tenant_id=pro, model="m", agent="reviewer", handoff_from="coder",
                       outcome="ok", latency_ms=80),
        ])  # fmt: skip
    page = (await b.client.get(f"/app/bots/{pro}")).text
    locked = (await b.client.get(f"/app/bots/{starter}")).text
    assert 'id="analytics-title"' in page
    assert page.count('<svg class="chart"') == 3
    assert "Messages per day, last 30 days" in page
    assert "<title>coder → reviewer: 1 times</title>" in page
    assert 'id="analytics-latency">100 ms / 120 ms' in page
    assert '<svg class="chart"' not in locked
    assert "Analytics are not part of the Starter plan: upgrade to Pro or Business" in locked


async def test_the_bot_page_filters_and_downloads_kept_logs(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    b = await sign_up(browsers)
    tid = await new_bot(b, "Logged bot", plan="pro")
    now = utcnow()
    with process_stack.db.tenant_session(tid) as s:
        for i, (level, text) in enumerate([("info", "hello"), ("error", "upstream down")]):
            s.add(RuntimeLogLine(tenant_id=tid, at=now + timedelta(seconds=i), level=level,
                                 line=f'{{"level": "{level}", "msg": "{text}"}}',
                                 line_hash=f"h{i}"))  # fmt: skip
    page = (await b.client.get(f"/app/bots/{tid}")).text
    errors = (await b.client.get(f"/app/bots/{tid}/logs/kept?level=error")).text
    download = await b.client.get(f"/app/bots/{tid}/logs/kept.txt")
    assert "kept 14 days on your plan" in page
    assert "upstream down" in errors and "hello" not in errors
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.text.splitlines()[0] == '{"level": "info", "msg": "hello"}'

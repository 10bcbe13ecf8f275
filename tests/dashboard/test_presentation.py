"""Presentation a picky customer notices: one timestamp format, the feed in words, a
favicon, a deployed bot's wizard leading to Switch, and "Log in instead" as a link."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from api.dashboard.render import activity, ago, when
from tests.dashboard.conftest import live_bot, sign_up
from tests.lifecycle_stack import Stack

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_one_timestamp_format_with_the_zone_and_the_relative_time() -> None:
    assert ago(NOW - timedelta(seconds=10), NOW) == "just now"
    assert ago(NOW - timedelta(minutes=3), NOW) == "3 min ago"
    assert ago(NOW - timedelta(hours=5), NOW) == "5 h ago"
    assert ago(NOW - timedelta(days=1), NOW) == "1 day ago"
    assert ago(NOW + timedelta(days=3), NOW) == "in 3 days"
    naive = datetime(2026, 12, 2, 3, 18, 5)  # SQLite hands back naive UTC
    shown = str(when(naive))
    assert 'datetime="2026-12-02T03:18:05+00:00"' in shown
    assert "2026-12-02 03:18 UTC · " in shown and 'title="2026-12-02 03:18:05 UTC"' in shown
    assert str(when("2026-12-02T03:18:05Z")).startswith('<time datetime="2026-12-02T03:18:05')
    assert str(when(None, "none yet")) == "none yet"
    assert str(when("<b>not a time</b>")) == "&lt;b&gt;not a time&lt;/b&gt;"


def test_the_activity_feed_is_in_words() -> None:
    assert activity("telegram.token_set") == "Telegram token changed"
    assert activity("command.pause") == "Pause requested"
    assert activity("something.new_here") == "Something new here"


async def test_favicon_and_login_link(browsers: Callable[[], httpx.AsyncClient]) -> None:
    b = await sign_up(browsers, "taken@example.com")
    icon = await b.client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    page = (await b.client.get("/app/new")).text
    assert '<link rel="icon" href="/static/favicon.svg"' in page
    again = await sign_up_page_error(browsers, "taken@example.com")
    assert '<a href="/app/login">Log in with this email instead</a>' in again


async def sign_up_page_error(make: Callable[[], httpx.AsyncClient], email: str) -> str:
    from tests.dashboard.conftest import Browser

    b = Browser(make(), email)
    await b.csrf_from("/app/signup")
    r = await b.post(
        "/app/signup", {"email": email, "password": "correct horse battery", "accept_terms": "yes"}
    )
    assert r.status_code == 409, r.text
    return r.text


async def test_a_deployed_bot_wizard_leads_to_switch(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    b = await sign_up(browsers)
    tid, _ = await live_bot(b, process_stack, "Deployed bot")
    r = await b.client.get(f"/app/bots/{tid}/setup/bundle")
    assert (r.status_code, r.headers["location"]) == (303, f"/app/bots/{tid}#switch-outcome")
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "already deployed: switch its bundle here" in page
    assert "Available when the bot is paused." in page
    feed = page.split('id="activity-title"')[1]
    assert "Telegram connected" in feed and "channel.telegram.connected" not in feed

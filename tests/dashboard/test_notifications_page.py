"""The notifications page saves what the API's /auth/me/notifications reads back."""

from __future__ import annotations

from core.db import Database
from tests.api.light_app import browser_signup, client, light_app


async def test_the_page_saves_channels_and_muted_topics(tmp_path, db: Database) -> None:
    app = light_app(tmp_path, db)
    async with client(app, base_url="http://127.0.0.1:8000") as c:
        csrf = await browser_signup(c, "n@example.com")
        page = await c.get("/app/notifications")
        assert page.status_code == 200
        assert 'value="email" checked' in page.text and 'value="payment" checked' in page.text
        saved = await c.post(
            "/app/notifications",
            data={"csrf_token": csrf, "channels": ["telegram"],
                  "topics": ["bot_down", "token_revoked", "payment"]},
            headers={"Origin": "http://127.0.0.1:8000"},
        )  # fmt: skip
        assert saved.status_code == 200, saved.text
        assert "Saved." in saved.text
        assert 'value="email" checked' not in saved.text
        assert 'value="budget" checked' not in saved.text
        api = await c.get("/auth/me/notifications")
    assert api.json() == {"email": False, "telegram": True, "muted": ["budget"]}

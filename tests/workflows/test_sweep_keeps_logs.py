"""Logs that last: the health sweep keeps each runtime's log lines, across its restarts, for
the plan's retention; the API filters them by level and text and downloads them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

from sqlalchemy import update
from temporalio.testing import ActivityEnvironment

from core.db import Database
from core.db.models import RuntimeLogLine, User
from core.settings import Settings
from tests.api.light_app import PASSWORD, client, light_app
from tests.fakes.fleet import AddressBook, register_fleet
from tests.workflows.test_sweep_scale import _activities

SECRET = "sk_live_abcdefghijklmnop"


def _line(at: datetime, level: str, msg: str) -> str:
    ts = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return json.dumps({"ts": ts, "level": level, "logger": "runtime", "msg": msg})


class _Runtime(BaseHTTPRequestHandler):
    """A runtime stand-in: ``/api/status`` ok, ``/api/logs`` its in-memory lines."""

    lines: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        doc = {"lines": self.lines} if self.path.startswith("/api/logs") else {"ok": True}
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def logging_runtime() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Runtime)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_logs_outlive_a_restart_and_are_filtered_and_downloaded(
    tmp_path, settings: Settings, db: Database
) -> None:
    book = AddressBook()
    acts = _activities(settings, db, book)
    [tid] = register_fleet(db, acts.provisioner.store, 1)  # a pro bot: 14 days kept
    now = datetime.now(UTC)
    before = [
        _line(now - timedelta(days=20), "info", "too old for pro"),
        _line(now - timedelta(minutes=5), "info", "started"),
        _line(now - timedelta(minutes=4), "error", f"model call failed with {SECRET}"),
    ]
    after = [_line(now - timedelta(minutes=1), "warning", "restarted, queue replayed")]
    with logging_runtime() as url:
        book.addresses[tid] = url
        _Runtime.lines = before
        await ActivityEnvironment().run(acts.sweep_runtimes)
        await ActivityEnvironment().run(acts.sweep_runtimes)  # the same lines again: kept once
        _Runtime.lines = after  # a restart empties the runtime's buffer
        await ActivityEnvironment().run(acts.sweep_runtimes)
    await acts.http.aclose()
    with db.tenant_session(tid) as s:
        assert s.query(RuntimeLogLine).count() == 3  # the 20-day-old line is past retention

    app = light_app(tmp_path / "api", db)
    async with client(app) as c:
        r = await c.post(
            "/auth/signup",
            json={"email": "a@example.com", "password": PASSWORD, "accept_terms": True},
        )
        admin = {"Authorization": f"Bearer {r.json()['token']}"}
        r = await c.post(
            "/auth/signup",
            json={"email": "s@example.com", "password": PASSWORD, "accept_terms": True},
        )
        stranger = {"Authorization": f"Bearer {r.json()['token']}"}
        # The fleet's owner has no password: a platform admin reads on their behalf.
        with db.system_session() as s:
            s.execute(
                update(User).where(User.email == "a@example.com").values(is_platform_admin=True)
            )
        every = await c.get(f"/tenants/{tid}/logs/history", headers=admin)
        warned = await c.get(f"/tenants/{tid}/logs/history?level=warning", headers=admin)
        found = await c.get(f"/tenants/{tid}/logs/history?q=call%20failed", headers=admin)
        text = await c.get(f"/tenants/{tid}/logs/history.txt", headers=admin)
        hidden = await c.get(f"/tenants/{tid}/logs/history", headers=stranger)
    assert [json.loads(x["line"])["msg"] for x in every.json()] == [
        "restarted, queue replayed", "model call failed with sk***", "started",
    ]  # fmt: skip
    assert [x["level"] for x in warned.json()] == ["warning", "error"]
    assert [json.loads(x["line"])["msg"] for x in found.json()] == ["model call failed with sk***"]
    assert text.headers["content-disposition"].startswith("attachment")
    assert text.text.splitlines()[0] == json.loads(json.dumps(before[1]))
    assert SECRET not in text.text and SECRET not in every.text
    assert hidden.status_code == 404

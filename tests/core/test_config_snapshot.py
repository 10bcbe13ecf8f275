"""Rollback points cover the bot's access mode, and a live access change is kept by them."""

from __future__ import annotations

from core import config_snapshot as cs
from core.db import Database
from core.db.models import Tenant
from core.secrets import build_secret_store
from core.settings import Settings


def _access(db: Database, tid: str) -> str:
    with db.tenant_session(tid) as s:
        tenant = s.get(Tenant, tid)
        assert tenant is not None
        return tenant.telegram_access


def _set_access(db: Database, tid: str, mode: str) -> None:
    with db.tenant_session(tid) as s:
        tenant = s.get(Tenant, tid)
        assert tenant is not None
        tenant.telegram_access = mode


def test_rollback_restores_the_access_mode_and_keeps_a_live_change(
    db: Database, settings: Settings
) -> None:
    store = build_secret_store(settings, db)
    with db.system_session() as s:
        s.add(Tenant(id="ta", name="A", plan="starter"))
    cs.record_applied(db, store, "ta")  # started private
    assert cs.current_config(db, store, "ta")["tenant"]["telegram_access"] == "private"

    # A change persisted for a reconfigure that then fails: rollback puts it back.
    assert cs.save_rollback_point(db, store, "ta", "wf-1")
    _set_access(db, "ta", "public")
    assert cs.restore_rollback_point(db, store, "ta")
    assert _access(db, "ta") == "private"

    # The owner makes the bot public live (no restart): a later rollback keeps that.
    _set_access(db, "ta", "public")
    cs.applied_live(db, store, "ta", telegram_access="public", not_a_field="ignored")
    assert cs.save_rollback_point(db, store, "ta", "wf-2")
    assert cs.restore_rollback_point(db, store, "ta")
    assert _access(db, "ta") == "public"

"""Everything we hold about one customer, for them to download (GDPR article 15 and 20).

The export holds the account, the legal versions accepted, the organizations the user
belongs to, the bots of organizations the user owns (their
settings without secrets, deployment history, usage, kept runtime logs, approved Telegram
senders, backups' metadata), the bots they are only a member of (name and role), and the
audit entries about them. Never a secret, a hash or a reference into the secret store,
and never a row of a bot the user does not own: owned bots are read through a session
bound to that bot (``core.db.scoping``). Support staff's entries stay internal.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core import legal, twofactor
from core.db import Database
from core.db.models import (
    ApiToken,
    AuditLog,
    Credential,
    Deployment,
    DeploymentEvent,
    NotificationPreference,
    RuntimeLogLine,
    Subscription,
    TelegramApproval,
    TenantBackup,
    UsageDaily,
    UsageEvent,
    User,
)
from core.errors import Unauthorized
from core.organizations import orgs_of
from core.tenants import require_tenant, tenants_of

FORMAT_VERSION = 1
SUPPORT_ACTOR_PREFIX = "support:"
MAX_USAGE_EVENTS = 50_000  # per bot; the daily roll-ups cover everything older


def _row(obj: object, *names: str) -> dict[str, Any]:
    return {n: getattr(obj, n) for n in names}


def _account(session: Session, user: User) -> dict[str, Any]:
    tokens = session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)).all()
    prefs = session.get(NotificationPreference, user.id)
    return {
        **_row(user, "id", "email", "display_name", "created_at", "last_login_at",
               "email_verified_at", "is_platform_admin"),
        "two_factor": {
            "enabled": twofactor.is_enabled(user), "enabled_at": user.totp_enabled_at,
            "recovery_codes_left": twofactor.recovery_codes_left(session, user.id),
        },
        "legal_acceptances": [
            _row(a, "version", "accepted_at") for a in legal.history(session, user.id)
        ],
        "api_tokens": [
            _row(t, "name", "scopes", "created_at", "last_used_at", "expires_at", "revoked_at")
            for t in tokens
        ],
        "notification_preferences": (
            _row(prefs, "email", "telegram", "muted", "updated_at") if prefs else None
        ),
    }  # fmt: skip


def _bot(session: Session, tenant_id: str, role: str) -> dict[str, Any]:
    """One owned bot, read through a session bound to it."""
    t = require_tenant(session, tenant_id)
    usage = session.scalars(
        select(UsageEvent).order_by(UsageEvent.created_at.desc()).limit(MAX_USAGE_EVENTS)
    ).all()
    return {
        **_row(t, "id", "name", "plan", "bundle_id", "model_mode", "model", "billing_status",
               "telegram_owner_id", "telegram_bot_username", "telegram_access", "created_at"),
        "role": role,
        "credentials": [  # which secrets are set, never their value, last four or reference
            _row(c, "kind", "detail", "created_at", "updated_at")
            for c in session.scalars(select(Credential))
        ],
        "subscriptions": [
            _row(s, "plan", "status", "current_period_end", "created_at")
            for s in session.scalars(select(Subscription))
        ],
        "deployments": [
            _row(d, "id", "state", "reason", "bundle_id", "bundle_version", "created_at",
                 "healthy_at")
            for d in session.scalars(select(Deployment).order_by(Deployment.created_at))
        ],
        "deployment_events": [
            _row(e, "deployment_id", "from_state", "to_state", "reason", "at")
            for e in session.scalars(select(DeploymentEvent).order_by(DeploymentEvent.id))
        ],
        "approved_telegram_senders": [
            _row(a, "sender_id", "first_name", "approved_at")
            for a in session.scalars(select(TelegramApproval))
        ],
        "usage_daily": [
            _row(u, "day", "requests", "input_tokens", "output_tokens", "cost_micros")
            for u in session.scalars(select(UsageDaily).order_by(UsageDaily.day))
        ],
        "usage_events": [
            _row(u, "created_at", "model", "mode", "input_tokens", "output_tokens",
                 "cost_micros", "outcome", "agent")
            for u in usage
        ],
        "runtime_logs": [
            _row(line, "at", "level", "line")
            for line in session.scalars(select(RuntimeLogLine).order_by(RuntimeLogLine.at))
        ],
        "backups": [
            _row(b, "id", "kind", "size_bytes", "sha256", "created_at")
            for b in session.scalars(select(TenantBackup).order_by(TenantBackup.created_at))
        ],
    }  # fmt: skip


def _audit(session: Session, user_id: str, owned: list[str]) -> list[dict[str, Any]]:
    about = or_(AuditLog.actor == f"user:{user_id}", AuditLog.tenant_id.in_(owned))
    rows = session.scalars(
        select(AuditLog)
        .where(about, ~AuditLog.actor.startswith(SUPPORT_ACTOR_PREFIX))
        .order_by(AuditLog.id)
    )
    mine = f"user:{user_id}"
    return [
        {**_row(a, "at", "tenant_id", "action", "detail"),
         "actor": a.actor if a.actor in (mine, "system", "billing") else "another user"}
        for a in rows
    ]  # fmt: skip


def collect(db: Database, user_id: str) -> dict[str, Any]:
    """The whole export of one user as plain data."""
    with db.system_session() as session:
        user = session.get(User, user_id)
        if user is None or user.deleted_at is not None:
            raise Unauthorized("This account no longer exists.")
        account = _account(session, user)
        memberships = [(t.id, t.name, role) for t, role in tenants_of(session, user_id)]
        organizations = [
            {"id": o.id, "name": o.name, "personal": o.personal, "role": role}
            for o, role in orgs_of(session, user_id)
        ]
    owned = [(tid, role) for tid, _, role in memberships if role == "owner"]
    bots = []
    for tid, role in owned:
        with db.tenant_session(tid) as session:
            bots.append(_bot(session, tid, role))
    with db.system_session() as session:
        audit = _audit(session, user_id, [tid for tid, _ in owned])
    return {
        "format_version": FORMAT_VERSION,
        "account": account,
        "bots": bots,
        "organizations": organizations,
        "memberships": [
            {"bot_id": tid, "name": name, "role": role} for tid, name, role in memberships
        ],
        "audit_log": audit,
    }


def _default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(data: dict[str, Any]) -> bytes:
    """The export as indented JSON."""
    return json.dumps(data, default=_default, indent=2, ensure_ascii=False).encode()


def to_zip(data: dict[str, Any]) -> bytes:
    """The export as a zip: the whole export plus one file per bot and per bot's logs."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export.json", to_json(data))
        archive.writestr("account.json", to_json(data["account"]))
        for bot in data["bots"]:
            archive.writestr(f"bots/{bot['id']}.json", to_json(bot))
            lines = (f"{ln['at'].isoformat()} {ln['level']} {ln['line']}" for ln in
                     bot["runtime_logs"])  # fmt: skip
            archive.writestr(f"bots/{bot['id']}-logs.txt", "\n".join(lines))
        archive.writestr(
            "README.txt",
            "Your TinyClaw Cloud data. export.json holds everything; the other files are the "
            "same data split by account and bot. Secrets (bot tokens, provider keys, "
            "passwords) are never exported.\n",
        )
    return buffer.getvalue()

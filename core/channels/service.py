"""A tenant's channels: which are connected, their non-secret detail and state, the plan cap.

Each channel's secrets are ``credentials`` rows (the secret store holds the values):
Telegram's bot token, Discord's bot token, and WhatsApp's access token and app secret
(one JSON secret). The ``channels`` row says the channel is connected and how its last
check went; the runtime is told through the reconfigure workflow.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import credentials as creds
from core.db import Database
from core.db.models import Channel
from core.errors import NotFound, PlanLimitExceeded
from core.plans import PLANS, get_plan
from core.secrets import SecretStore
from core.tenants import require_tenant

ChannelKind = Literal["telegram", "discord", "whatsapp"]
KINDS: tuple[str, ...] = get_args(ChannelKind)
DISCORD = "discord_bot_token"
WHATSAPP = "whatsapp_credentials"  # JSON: {"access_token": ..., "app_secret": ...}
CREDENTIAL_KIND = {"telegram": creds.TELEGRAM, "discord": DISCORD, "whatsapp": WHATSAPP}
LABELS = {"telegram": "Telegram", "discord": "Discord", "whatsapp": "WhatsApp"}


def channels(session: Session, tenant_id: str) -> list[Channel]:
    """The tenant's connected channels, in the order of ``KINDS``.

    A channel is connected when its credential is stored (the credential is what the
    runtime gets, and a rollback restores credentials); the ``channels`` row adds state
    and detail, and is made here (unsaved) for a credential stored without one.
    """
    rows = {
        c.kind: c for c in session.scalars(select(Channel).where(Channel.tenant_id == tenant_id))
    }
    out = []
    for kind in KINDS:
        row = creds.credential(session, tenant_id, CREDENTIAL_KIND[kind])
        if row is None:
            continue
        out.append(
            rows.get(kind)
            or Channel(
                tenant_id=tenant_id,
                kind=kind,
                state="connected",
                detail=row.detail,
                last_checked_at=row.updated_at,
            )
        )
    return out


def channel(session: Session, tenant_id: str, kind: str) -> Channel | None:
    """One of the tenant's channels, or None when it is not connected."""
    return session.scalars(
        select(Channel).where(Channel.tenant_id == tenant_id, Channel.kind == kind)
    ).first()


def enabled_kinds(session: Session, tenant_id: str) -> list[str]:
    """The kinds the runtime should run, in a stable order."""
    return [c.kind for c in channels(session, tenant_id)]


def check_room(session: Session, tenant_id: str, kind: str) -> None:
    """``PlanLimitExceeded`` when connecting ``kind`` would pass the plan's ``max_channels``,
    naming the cheapest plan that allows one more."""
    kinds = set(enabled_kinds(session, tenant_id))
    if kind in kinds:
        return  # replacing a channel's credentials does not add one
    plan = get_plan(require_tenant(session, tenant_id).plan)
    if len(kinds) + 1 <= plan.max_channels:
        return
    bigger = sorted(
        (p for p in PLANS.values() if p.max_channels > len(kinds)),
        key=lambda p: p.price_usd_month,
    )
    upgrade = (
        f"The {bigger[0].name} plan allows {bigger[0].max_channels}: upgrade to add "
        f"{LABELS.get(kind, kind)}."
        if bigger
        else "Disconnect one first."
    )
    raise PlanLimitExceeded(
        f"The {plan.name} plan allows {plan.max_channels} channel(s) and this bot has "
        f"{len(kinds)}. {upgrade}",
        limit="max_channels",
    )


def save_channel(
    db: Database, store: SecretStore, tenant_id: str, kind: str, secret: str,
    detail: dict[str, Any],
) -> Channel:  # fmt: skip
    """Store the channel's secret and mark it connected (checked now) with its detail."""
    creds.store_credential(db, store, tenant_id, CREDENTIAL_KIND[kind], secret, detail=detail)
    with db.tenant_session(tenant_id) as session:
        row = channel(session, tenant_id, kind)
        if row is None:
            row = Channel(tenant_id=tenant_id, kind=kind)
            session.add(row)
        row.state, row.detail, row.last_error = "connected", detail, None
        row.last_checked_at = datetime.now(UTC)
        session.flush()
        session.expunge(row)
    return row


def remove_channel(db: Database, store: SecretStore, tenant_id: str, kind: str) -> None:
    """Disconnect a channel: its row and its secret; NotFound when it is not connected."""
    with db.tenant_session(tenant_id) as session:
        if kind not in enabled_kinds(session, tenant_id):
            raise NotFound(f"{LABELS.get(kind, kind)} is not connected.", code="unknown_channel")
        row = channel(session, tenant_id, kind)
        if row is not None:
            session.delete(row)
    creds.delete_credential(db, store, tenant_id, CREDENTIAL_KIND[kind])


def mark_checked(
    db: Database, tenant_id: str, kind: str, error: str | None, detail: dict[str, Any] | None = None
) -> None:
    """Record a check's outcome (``error`` None: it passed); a missing channel is ignored."""
    with db.tenant_session(tenant_id) as session:
        row = channel(session, tenant_id, kind)
        if row is None:
            return
        row.state = "connected" if error is None else "failing"
        row.last_error = error[:300] if error else None
        row.last_checked_at = datetime.now(UTC)
        if detail:
            row.detail = {**(row.detail or {}), **detail}


def channel_secrets(db: Database, store: SecretStore, tenant_id: str) -> dict[str, Any]:
    """Every connected channel's secret by kind (WhatsApp's as its JSON object)."""
    with db.tenant_session(tenant_id) as session:
        kinds = enabled_kinds(session, tenant_id)
    out: dict[str, Any] = {}
    for kind in kinds:
        value = creds.read_secret(db, store, tenant_id, CREDENTIAL_KIND[kind])
        if value is None:
            continue
        out[kind] = json.loads(value) if kind == "whatsapp" else value
    return out

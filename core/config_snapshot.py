"""The configuration a runtime was last started with, kept so a failed change can roll back.

Settings a customer changes (Telegram token, provider key, model mode, ...) are persisted
first and applied by the reconfigure workflow afterwards. By then the previous values are
gone from the tenant's credentials, so every runtime start records what it was started
with (``applied_config``), the reconfigure workflow copies that to a rollback point before
it applies anything, and a failed reconfigure puts the rollback point back.

Snapshots hold secrets, so they live in the secret store like any credential; the
database keeps only the reference row.
"""

from __future__ import annotations

import json
from typing import Any

from core import credentials as creds
from core.channels.service import CREDENTIAL_KIND
from core.db import Database
from core.deployments import get_tenant
from core.secrets import SecretStore

APPLIED = "applied_config"
ROLLBACK = "rollback_config"
SNAPSHOT_KINDS = (APPLIED, ROLLBACK)
# What a snapshot covers: customer credentials (value + detail) and runtime-relevant columns.
SECRET_KINDS = (*CREDENTIAL_KIND.values(), creds.PROVIDER_KEY)
TENANT_FIELDS = (
    "model_mode", "model", "telegram_owner_id", "telegram_bot_username", "telegram_access",
)  # fmt: skip


def current_config(db: Database, store: SecretStore, tenant_id: str) -> dict[str, Any]:
    """The tenant's configuration as persisted now (secret values included)."""
    secrets: dict[str, Any] = {}
    for kind in SECRET_KINDS:
        value = creds.read_secret(db, store, tenant_id, kind)
        with db.tenant_session(tenant_id) as session:
            row = creds.credential(session, tenant_id, kind)
            detail = dict(row.detail) if row is not None and row.detail else None
        secrets[kind] = None if value is None else {"value": value, "detail": detail}
    with db.tenant_session(tenant_id) as session:
        tenant = get_tenant(session, tenant_id)
        fields = {name: getattr(tenant, name) for name in TENANT_FIELDS}
    return {"secrets": secrets, "tenant": fields}


def _read(db: Database, store: SecretStore, tenant_id: str, kind: str) -> dict[str, Any] | None:
    raw = creds.read_secret(db, store, tenant_id, kind)
    return json.loads(raw) if raw else None


def _label(db: Database, tenant_id: str, kind: str) -> str | None:
    with db.tenant_session(tenant_id) as session:
        row = creds.credential(session, tenant_id, kind)
        return str((row.detail or {}).get("label")) if row is not None and row.detail else None


def record_applied(db: Database, store: SecretStore, tenant_id: str) -> None:
    """Remember the configuration the runtime is being started with."""
    config = json.dumps(current_config(db, store, tenant_id), sort_keys=True)
    creds.store_credential(db, store, tenant_id, APPLIED, config)


def save_rollback_point(db: Database, store: SecretStore, tenant_id: str, label: str) -> bool:
    """Copy the applied configuration to the rollback point once per ``label`` (a workflow).

    Returns whether a previous configuration is known (a runtime started before this
    feature existed has none: its rollback can only restart what is persisted).
    """
    if _label(db, tenant_id, ROLLBACK) == label:
        return _read(db, store, tenant_id, ROLLBACK) is not None
    applied = _read(db, store, tenant_id, APPLIED)
    if applied is None:
        creds.delete_credential(db, store, tenant_id, ROLLBACK)
        return False
    creds.store_credential(
        db, store, tenant_id, ROLLBACK, json.dumps(applied, sort_keys=True),
        detail={"label": label},
    )  # fmt: skip
    return True


def restore_rollback_point(db: Database, store: SecretStore, tenant_id: str) -> bool:
    """Put the rollback point's settings back as the tenant's configuration (idempotent)."""
    saved = _read(db, store, tenant_id, ROLLBACK)
    if saved is None:
        return False
    for kind, secret in saved["secrets"].items():
        if secret is None:
            creds.delete_credential(db, store, tenant_id, kind)
        else:
            creds.store_credential(
                db, store, tenant_id, kind, secret["value"], detail=secret["detail"]
            )
    with db.tenant_session(tenant_id) as session:
        tenant = get_tenant(session, tenant_id)
        for name, value in saved["tenant"].items():
            if name in TENANT_FIELDS:
                setattr(tenant, name, value)
    return True


def applied_live(db: Database, store: SecretStore, tenant_id: str, **fields: Any) -> None:
    """Record tenant fields a running runtime took without a restart (the access mode).

    They are part of both the applied configuration and any rollback point, so rolling
    back a failed reconfigure never silently undoes a change the owner made live.
    """
    for kind in SNAPSHOT_KINDS:
        saved = _read(db, store, tenant_id, kind)
        if saved is None:
            continue
        saved["tenant"].update({k: v for k, v in fields.items() if k in TENANT_FIELDS})
        with db.tenant_session(tenant_id) as session:
            row = creds.credential(session, tenant_id, kind)
            detail = dict(row.detail) if row is not None and row.detail else None
        creds.store_credential(
            db, store, tenant_id, kind, json.dumps(saved, sort_keys=True), detail=detail
        )

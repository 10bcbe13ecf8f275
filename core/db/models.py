"""SQLAlchemy 2 models of the control plane.

Tenant-owned tables inherit ``TenantOwned``; queries on them go through the
scoping in ``core.db.scoping`` so a tenant-bound session can only ever see its
own rows. Secrets are never stored here: ``credentials`` keeps a reference into
the secret store and the last four characters for display.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.audit_origin import current_origin


def new_id() -> str:
    """A fresh opaque identifier (UUID4 hex, 32 characters)."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(when: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time we store is UTC."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class TenantOwned:
    """Marker mixin: the row belongs to exactly one tenant."""

    tenant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(200))
    is_platform_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    email_verified_at: Mapped[datetime | None]

    memberships: Mapped[list[Membership]] = relationship(back_populates="user")


class Organization(Base):
    """Who owns bots: a team, or one person's personal organization (made at sign-up)."""

    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    # The organization made for one user at sign-up (or by migration 0018).
    personal: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class OrgMembership(Base):
    """A user's role in an organization: owner | admin | member | viewer (core/permissions)."""

    __tablename__ = "org_memberships"
    __table_args__ = (UniqueConstraint("organization_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OrgInvitation(Base):
    """An emailed invitation to join an organization with a role; the link is signed
    (core/links) and names this row, which is used once."""

    __tablename__ = "org_invitations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320), index=True)
    role: Mapped[str] = mapped_column(String(16))
    invited_by: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_by: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    revoked_at: Mapped[datetime | None]


class ApiToken(Base):
    """A personal API token: only its SHA-256 hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last4: Mapped[str] = mapped_column(String(4))
    # Space-separated subset of "read write admin".
    scopes: Mapped[str] = mapped_column(
        String(64), default="read write", server_default="read write admin"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(32))
    # Every bot belongs to one organization; its members' roles decide who may do what.
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="RESTRICT"), index=True
    )
    bundle_id: Mapped[str | None] = mapped_column(String(64))
    model_mode: Mapped[str] = mapped_column(String(16), default="managed")  # managed | byok
    # The bot's managed model pick (a catalog id); None: the bundle's own models.
    model: Mapped[str | None] = mapped_column(String(200))
    billing_status: Mapped[str] = mapped_column(String(32), default="off")
    telegram_owner_id: Mapped[int | None] = mapped_column(BigInteger)
    telegram_bot_username: Mapped[str | None] = mapped_column(String(64))
    # private: approved senders only (strangers get a pairing code); public: anyone.
    telegram_access: Mapped[str] = mapped_column(String(16), default="private")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]
    # Written by the tenant workflow (``save_tenant_state``) so that a fresh run (after a
    # failure, a terminate or a reset) rebuilds dunning, retention and support state.
    grace_deadline: Mapped[datetime | None]
    delete_at: Mapped[datetime | None]
    purge_at: Mapped[datetime | None]
    last_billing_event_at: Mapped[datetime | None]
    kill_switch: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    suspended_for_billing: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )

    memberships: Mapped[list[Membership]] = relationship(back_populates="tenant")


class Membership(TenantOwned, Base):
    """Who created a bot (before organizations, the per-bot access list; access is now the
    role in the bot's organization, ``OrgMembership``)."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("tenant_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # owner | member
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    tenant: Mapped[Tenant] = relationship(back_populates="memberships")


class Subscription(TenantOwned, Base):
    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    plan: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))  # Stripe's status, or "off"
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    current_period_end: Mapped[datetime | None]
    # Creation time of the last Stripe event applied: older events never move state back.
    last_event_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Bundle(Base):
    __tablename__ = "bundles"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    versions: Mapped[list[BundleVersion]] = relationship(back_populates="bundle")


class BundleVersion(Base):
    __tablename__ = "bundle_versions"
    __table_args__ = (UniqueConstraint("bundle_id", "version"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    bundle_id: Mapped[str] = mapped_column(ForeignKey("bundles.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(32))
    manifest: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    bundle: Mapped[Bundle] = relationship(back_populates="versions")


class Deployment(TenantOwned, Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    bundle_id: Mapped[str | None] = mapped_column(String(64))
    bundle_version: Mapped[str | None] = mapped_column(String(32))
    runtime_name: Mapped[str | None] = mapped_column(String(128))
    workflow_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    healthy_at: Mapped[datetime | None]
    # Set when the platform sees the runtime die or stop answering; a later healthy_at
    # (the restart that restored it) supersedes it.
    runtime_down_at: Mapped[datetime | None]
    runtime_down_reason: Mapped[str | None] = mapped_column(Text)

    @property
    def runtime_health(self) -> str:
        """What the platform last saw of the runtime: up, down, starting or stopped."""
        if self.state in ("provisioning", "updating"):
            return "starting"
        if self.state == "failed":
            return "down"
        if self.state != "healthy":
            return "stopped"
        down, healthy = _aware(self.runtime_down_at), _aware(self.healthy_at)
        if down is not None and (healthy is None or down >= healthy):
            return "down"
        return "up"

    events: Mapped[list[DeploymentEvent]] = relationship(
        back_populates="deployment", order_by="DeploymentEvent.id"
    )


class DeploymentEvent(TenantOwned, Base):
    """One state change of a deployment, with its time and reason."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    workflow_id: Mapped[str | None] = mapped_column(String(200))
    # Dedupe key so a retried activity never records the same change twice.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    deployment: Mapped[Deployment] = relationship(back_populates="events")


class TelegramApproval(TenantOwned, Base):
    """A Telegram sender the owner approved to talk to the bot (rendered into pairing.json)."""

    __tablename__ = "telegram_approvals"
    __table_args__ = (UniqueConstraint("tenant_id", "sender_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    sender_id: Mapped[str] = mapped_column(String(24))
    first_name: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[datetime] = mapped_column(default=utcnow)


class Credential(TenantOwned, Base):
    """A reference to a secret in the secret store; never the secret itself."""

    __tablename__ = "credentials"
    __table_args__ = (UniqueConstraint("tenant_id", "kind"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))  # telegram_bot_token | provider_key | ...
    ref: Mapped[str] = mapped_column(String(255))
    last4: Mapped[str | None] = mapped_column(String(4))
    detail: Mapped[dict[str, Any] | None]  # non-secret metadata, e.g. provider name
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SecretBlob(Base):
    """Ciphertext of the local secret store (AES-256-GCM envelope encryption)."""

    __tablename__ = "secret_blobs"

    ref: Mapped[str] = mapped_column(String(255), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(32), index=True)
    key_version: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[str] = mapped_column(Text)
    ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class GatewayToken(TenantOwned, Base):
    """A tenant runtime's token for the provider gateway; only its hash is stored."""

    __tablename__ = "gateway_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    deployment_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class UsageEvent(TenantOwned, Base):
    __tablename__ = "usage_events"
    __table_args__ = (Index("ix_usage_events_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    upstream: Mapped[str | None] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(16), default="managed")
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # Cost in micro-dollars: integers keep the sums exact.
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    streamed: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str] = mapped_column(String(32))  # ok | upstream_error | refused_* ...
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The gateway's write batch: a spooled batch is replayed only if it is not here yet.
    batch_id: Mapped[str | None] = mapped_column(String(40), index=True)
    # The bundle agent that made the call, and the teammate that handed it the work (None:
    # the user's own message): the runtime names both in headers (customer analytics).
    agent: Mapped[str | None] = mapped_column(String(64))
    handoff_from: Mapped[str | None] = mapped_column(String(64))


class UsageDaily(TenantOwned, Base):
    """Roll-up of ``usage_events`` per tenant per day."""

    __tablename__ = "usage_daily"
    __table_args__ = (UniqueConstraint("tenant_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)


class RuntimeLogLine(TenantOwned, Base):
    """One runtime log line (already redacted), kept by the control plane across restarts;
    the hash of the line makes a line read twice from the runtime's buffer a no-op."""

    __tablename__ = "runtime_log_lines"
    __table_args__ = (
        UniqueConstraint("tenant_id", "line_hash"),
        Index("ix_runtime_log_lines_tenant_at", "tenant_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime]
    level: Mapped[str] = mapped_column(String(16))
    line: Mapped[str] = mapped_column(Text)
    line_hash: Mapped[str] = mapped_column(String(64))


class WebhookEvent(Base):
    """A received provider event, recorded by ID so redelivery does nothing."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(100))
    tenant_id: Mapped[str | None] = mapped_column(String(32), index=True)
    event_created_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(String(32), index=True)
    # Organization-level entries (members, invitations) name the organization, not a bot.
    organization_id: Mapped[str | None] = mapped_column(String(32), index=True)
    actor: Mapped[str] = mapped_column(String(200))  # user:<id> | system | support:<name>
    action: Mapped[str] = mapped_column(String(100))
    detail: Mapped[dict[str, Any] | None]
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # Where the request came from (filled from the request by core.audit_origin).
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))


class TenantBackup(TenantOwned, Base):
    """One encrypted backup of a tenant's runtime home (the file lives under the data dir;
    the key stays in the secret store and is never recorded here)."""

    __tablename__ = "tenant_backups"
    __table_args__ = (Index("ix_tenant_backups_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # scheduled | manual | pre-restore | deletion
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(String(300))  # relative to the backups directory
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A deleted bot restored: its next deploy puts this backup into the fresh home.
    restore_on_deploy: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class NotificationPreference(Base):
    """How a user wants to hear about trouble with their bots (no row: every notice, both ways)."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[bool] = mapped_column(Boolean, default=True)
    telegram: Mapped[bool] = mapped_column(Boolean, default=True)
    # Notice topics the user turned off (bot_down, token_revoked, budget, payment).
    muted: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Notice(Base):
    """One notice decided on: sent, throttled or muted. ``dedup_key`` makes a redelivered
    alert or event a no-op; recent ``sent`` rows throttle the same kind for the same bot."""

    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_recipient_kind", "recipient", "tenant_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    recipient: Mapped[str] = mapped_column(String(64))  # a user id, or "operator"
    tenant_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # sending | sent | throttled | muted
    channels: Mapped[str] = mapped_column(String(64), default="")  # delivered: "email telegram"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkerHeartbeat(Base):
    """A worker process's latest sign of life (readiness: a worker serves the task queue)."""

    __tablename__ = "worker_heartbeats"

    identity: Mapped[str] = mapped_column(String(200), primary_key=True)
    task_queue: Mapped[str] = mapped_column(String(200), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(default=utcnow)


@event.listens_for(Tenant, "before_insert")
def _every_bot_has_an_organization(_mapper: Any, connection: Connection, tenant: Tenant) -> None:
    """A bot inserted without an organization (a script, an old fixture) gets one of its own,
    with no members: only platform staff see it until someone is added."""
    if tenant.organization_id is None:
        org_id = new_id()
        connection.execute(
            Organization.__table__.insert().values(
                id=org_id, name=(tenant.name or "Bot")[:200], personal=False, created_at=utcnow()
            )
        )
        tenant.organization_id = org_id


@event.listens_for(AuditLog, "before_insert")
def _stamp_origin(_mapper: Any, _connection: Connection, entry: AuditLog) -> None:
    """Record where the request that wrote this entry came from (core.audit_origin)."""
    ip, agent = current_origin()
    if entry.ip is None:
        entry.ip = ip
    if entry.user_agent is None:
        entry.user_agent = agent


from core.db.sessions_model import WebSession  # noqa: E402, F401 (registers the table)

"""organizations: every bot belongs to one; members with roles; invitations; audit origin

Every existing user gets a personal organization (as owner); every existing bot moves
into its owner's personal organization; a bot's other members become members of that
organization (role ``member``). A bot without an owner gets an organization of its own.

Revision ID: 0018
Revises: 0016 (runtime_log_lines)
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tables() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("personal", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "org_memberships",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organization_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("organization_id", "user_id"),
    )
    op.create_index("ix_org_memberships_organization_id", "org_memberships", ["organization_id"])
    op.create_index("ix_org_memberships_user_id", "org_memberships", ["user_id"])
    op.create_table(
        "org_invitations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organization_id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("invited_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_by", sa.String(length=32), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["invited_by"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["accepted_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_org_invitations_organization_id", "org_invitations", ["organization_id"])
    op.create_index("ix_org_invitations_email", "org_invitations", ["email"])
    op.add_column("audit_log", sa.Column("organization_id", sa.String(length=32), nullable=True))
    op.add_column("audit_log", sa.Column("ip", sa.String(length=64), nullable=True))
    op.add_column("audit_log", sa.Column("user_agent", sa.String(length=300), nullable=True))
    op.create_index("ix_audit_log_organization_id", "audit_log", ["organization_id"])
    # Nullable in the DDL so SQLite can add it without rebuilding ``tenants`` (a rebuild
    # would cascade-delete every row that references a bot); PostgreSQL gets NOT NULL below.
    op.add_column("tenants", sa.Column("organization_id", sa.String(length=32), nullable=True))
    op.create_index("ix_tenants_organization_id", "tenants", ["organization_id"])


def _backfill() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC)
    orgs, members, moves = [], [], []
    personal: dict[str, str] = {}
    for user_id, email, name in bind.execute(
        sa.text("SELECT id, email, display_name FROM users ORDER BY created_at")
    ):
        org_id = uuid.uuid4().hex
        personal[user_id] = org_id
        orgs.append({"id": org_id, "name": (name or email)[:200], "personal": True, "at": now})
        members.append({"id": uuid.uuid4().hex, "o": org_id, "u": user_id, "r": "owner", "at": now})
    seen = {(m["o"], m["u"]) for m in members}
    rows = bind.execute(
        sa.text(
            "SELECT t.id, t.name, m.user_id, m.role FROM tenants t "
            "LEFT JOIN memberships m ON m.tenant_id = t.id ORDER BY t.created_at, m.created_at"
        )
    ).all()
    org_of: dict[str, str] = {}
    for tenant_id, _name, user_id, role in rows:  # owners first: they decide the org
        if role == "owner" and tenant_id not in org_of and user_id in personal:
            org_of[tenant_id] = personal[user_id]
    for tenant_id, name, _user_id, _role in rows:
        if tenant_id not in org_of:
            org_id = uuid.uuid4().hex
            org_of[tenant_id] = org_id
            orgs.append({"id": org_id, "name": (name or "Bot")[:200], "personal": False, "at": now})
    for tenant_id, _name, user_id, role in rows:
        if user_id is None or (org_of[tenant_id], user_id) in seen:
            continue
        seen.add((org_of[tenant_id], user_id))
        members.append(
            {"id": uuid.uuid4().hex, "o": org_of[tenant_id], "u": user_id,
             "r": "owner" if role == "owner" else "member", "at": now}
        )  # fmt: skip
    moves = [{"t": t, "o": o} for t, o in org_of.items()]
    if orgs:
        bind.execute(
            sa.text(
                "INSERT INTO organizations (id, name, personal, created_at) "
                "VALUES (:id, :name, :personal, :at)"
            ),
            orgs,
        )
    if members:
        bind.execute(
            sa.text(
                "INSERT INTO org_memberships (id, organization_id, user_id, role, created_at) "
                "VALUES (:id, :o, :u, :r, :at)"
            ),
            members,
        )
    if moves:
        bind.execute(sa.text("UPDATE tenants SET organization_id = :o WHERE id = :t"), moves)


def upgrade() -> None:
    _tables()
    _backfill()
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("tenants", "organization_id", nullable=False)
        op.create_foreign_key(
            "fk_tenants_organization_id", "tenants", "organizations",
            ["organization_id"], ["id"], ondelete="RESTRICT",
        )  # fmt: skip


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_tenants_organization_id", "tenants", type_="foreignkey")
    op.drop_index("ix_tenants_organization_id", "tenants")
    op.drop_index("ix_audit_log_organization_id", "audit_log")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("user_agent")
        batch.drop_column("ip")
        batch.drop_column("organization_id")
    op.drop_column("tenants", "organization_id")
    op.drop_table("org_invitations")
    op.drop_table("org_memberships")
    op.drop_table("organizations")

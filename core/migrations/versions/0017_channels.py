"""channels: a tenant's connected channels; the Telegram token becomes the first one

Revision ID: 0017
Revises: 0016 (runtime_log_lines)
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import uuid4

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    channels = op.create_table(
        "channels",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "kind"),
    )
    op.create_index("ix_channels_tenant_id", "channels", ["tenant_id"])
    # Channel identities other than Telegram's are prefixed ("discord:<snowflake>").
    with op.batch_alter_table("telegram_approvals", schema=None) as batch_op:
        batch_op.alter_column(
            "sender_id", type_=sa.String(length=40), existing_type=sa.String(length=24)
        )
    # Every tenant with a Telegram token already has its first channel.
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT c.tenant_id, c.updated_at, t.telegram_bot_username FROM credentials c "
            "JOIN tenants t ON t.id = c.tenant_id WHERE c.kind = 'telegram_bot_token'"
        )
    ).all()
    now = datetime.now(UTC)
    op.bulk_insert(
        channels,
        [
            {
                "id": uuid4().hex,
                "tenant_id": tenant_id,
                "kind": "telegram",
                "state": "connected",
                "detail": {"username": username} if username else None,
                "last_checked_at": now,
                "last_error": None,
                "created_at": now,
            }
            for tenant_id, _updated, username in rows
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("telegram_approvals", schema=None) as batch_op:
        batch_op.alter_column(
            "sender_id", type_=sa.String(length=24), existing_type=sa.String(length=40)
        )
    op.drop_index("ix_channels_tenant_id", table_name="channels")
    op.drop_table("channels")

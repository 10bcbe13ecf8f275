"""telegram pairing: approved senders and the bot's access mode

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "telegram_approvals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("sender_id", sa.String(length=24), nullable=False),
        sa.Column("first_name", sa.String(length=64), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "sender_id"),
    )
    with op.batch_alter_table("telegram_approvals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_telegram_approvals_tenant_id"), ["tenant_id"], unique=False
        )
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "telegram_access", sa.String(length=16), nullable=False, server_default="private"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("telegram_access")
    with op.batch_alter_table("telegram_approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_telegram_approvals_tenant_id"))
    op.drop_table("telegram_approvals")

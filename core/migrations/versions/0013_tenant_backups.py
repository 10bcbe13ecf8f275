"""tenant_backups: every encrypted backup of a tenant's runtime home (issue 14)

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenant_backups",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("location", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("restore_on_deploy", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tenant_backups", schema=None) as batch_op:
        batch_op.create_index("ix_tenant_backups_tenant_id", ["tenant_id"], unique=False)
        batch_op.create_index(
            "ix_tenant_backups_tenant_created", ["tenant_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tenant_backups", schema=None) as batch_op:
        batch_op.drop_index("ix_tenant_backups_tenant_created")
        batch_op.drop_index("ix_tenant_backups_tenant_id")
    op.drop_table("tenant_backups")

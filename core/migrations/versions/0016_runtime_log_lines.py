"""runtime log lines kept by the control plane (they outlive restarts; per-plan retention)

Revision ID: 0016
Revises: 0015 (usage_agent_handoff)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runtime_log_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("line_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "line_hash"),
    )
    op.create_index("ix_runtime_log_lines_tenant_at", "runtime_log_lines", ["tenant_id", "at"])
    op.create_index("ix_runtime_log_lines_tenant_id", "runtime_log_lines", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("runtime_log_lines")

"""runtime health on deployments; worker heartbeats for readiness

Revision ID: 0012
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runtime_down_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("runtime_down_reason", sa.Text(), nullable=True))
    op.create_table(
        "worker_heartbeats",
        sa.Column("identity", sa.String(length=200), nullable=False),
        sa.Column("task_queue", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identity"),
    )
    with op.batch_alter_table("worker_heartbeats", schema=None) as batch_op:
        batch_op.create_index("ix_worker_heartbeats_task_queue", ["task_queue"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("worker_heartbeats", schema=None) as batch_op:
        batch_op.drop_index("ix_worker_heartbeats_task_queue")
    op.drop_table("worker_heartbeats")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("runtime_down_reason")
        batch_op.drop_column("runtime_down_at")

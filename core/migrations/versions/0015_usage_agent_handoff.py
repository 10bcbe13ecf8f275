"""usage events name the agent that made the call and the teammate that handed it over

Revision ID: 0015
Revises: 0014 (notices)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("usage_events", sa.Column("agent", sa.String(length=64), nullable=True))
    op.add_column("usage_events", sa.Column("handoff_from", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("usage_events", "handoff_from")
    op.drop_column("usage_events", "agent")

"""a bot pinned to a bundle version (deploy, resume and reset use it; a switch moves it)

Revision ID: 0020
Revises: 0018 (organizations)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("pinned_bundle_version", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("pinned_bundle_version")

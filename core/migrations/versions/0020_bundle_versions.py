"""bundle versions: a bot pinned to a version; organizations' custom bundles and versions

Revision ID: 0020
Revises: 0018 (organizations)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("pinned_bundle_version", sa.String(length=32), nullable=True))
    op.create_table(
        "custom_bundles",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organization_id", sa.String(length=32), nullable=False),
        sa.Column("bundle_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("organization_id", "bundle_id"),
    )
    op.create_index("ix_custom_bundles_organization_id", "custom_bundles", ["organization_id"])
    op.create_table(
        "custom_bundle_versions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("custom_bundle_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["custom_bundle_id"], ["custom_bundles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("custom_bundle_id", "version"),
    )
    op.create_index(
        "ix_custom_bundle_versions_custom_bundle_id",
        "custom_bundle_versions",
        ["custom_bundle_id"],
    )


def downgrade() -> None:
    op.drop_table("custom_bundle_versions")
    op.drop_table("custom_bundles")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("pinned_bundle_version")

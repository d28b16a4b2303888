"""Cached contents (context caching).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from localgem.storage.tables import UtcTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cached_contents",
        sa.Column("project", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("display_name", sa.Text),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("token_count", sa.BigInteger, nullable=False),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("update_time", UtcTime, nullable=False),
        sa.Column("expire_time", UtcTime, nullable=False),
    )
    op.create_index("ix_cached_contents_expire_time", "cached_contents", ["expire_time"])


def downgrade() -> None:
    op.drop_index("ix_cached_contents_expire_time", "cached_contents")
    op.drop_table("cached_contents")

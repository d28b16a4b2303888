"""Quotas: request and token counters per minute and day, and leases of running requests, shared by every
server on the database.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from localgem.storage.tables import UtcTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_usage",
        sa.Column("bucket", sa.String(400), primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True),
        sa.Column("used", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "quota_leases",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("bucket", sa.String(400), primary_key=True),
        sa.Column("expire_time", UtcTime, nullable=False),
    )
    op.create_index("ix_quota_leases_bucket", "quota_leases", ["bucket", "expire_time"])


def downgrade() -> None:
    op.drop_table("quota_leases")
    op.drop_table("quota_usage")

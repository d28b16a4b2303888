"""Batches (long-running operations) and their requests.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from localgem.storage.tables import UtcTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("project", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("display_name", sa.Text),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("priority", sa.BigInteger, nullable=False),
        sa.Column("request_count", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(40)),
        sa.Column("lease_until", UtcTime),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("update_time", UtcTime, nullable=False),
        sa.Column("end_time", UtcTime),
    )
    op.create_index("ix_batches_project_create_time", "batches", ["project", "create_time"])
    op.create_index("ix_batches_state", "batches", ["state"])
    op.create_table(
        "batch_requests",
        sa.Column("project", sa.String(40), primary_key=True),
        sa.Column("batch_id", sa.String(40), primary_key=True),
        sa.Column("position", sa.BigInteger, primary_key=True),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("metadata", sa.Text),
        sa.Column("response", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("done", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("batch_requests")
    op.drop_index("ix_batches_state", "batches")
    op.drop_index("ix_batches_project_create_time", "batches")
    op.drop_table("batches")

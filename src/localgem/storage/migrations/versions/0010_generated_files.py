"""Generated files: video generation jobs (models.predictLongRunning) as leased operations.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from localgem.storage.tables import UtcTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generated_files",
        sa.Column("project", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("operation_id", sa.String(40), nullable=False, unique=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("model_id", sa.String(63), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("mime_type", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("file_id", sa.String(40)),
        sa.Column("progress", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(40)),
        sa.Column("lease_until", UtcTime),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("update_time", UtcTime, nullable=False),
        sa.Column("expire_time", UtcTime, nullable=False),
    )
    op.create_index("ix_generated_files_state", "generated_files", ["state"])
    op.create_index("ix_generated_files_project", "generated_files", ["project", "create_time"])


def downgrade() -> None:
    op.drop_index("ix_generated_files_project", "generated_files")
    op.drop_index("ix_generated_files_state", "generated_files")
    op.drop_table("generated_files")

"""The model catalogue: models added at run time (CLI, tuning jobs, installed packages), seen by every replica.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from localgem.storage.tables import UtcTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("update_time", UtcTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("models")

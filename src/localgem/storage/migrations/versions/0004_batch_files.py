"""Batches read from a JSONL file and answered in one.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("input_file", sa.String(40)))
        table.add_column(sa.Column("responses_file", sa.String(40)))


def downgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.drop_column("responses_file")
        table.drop_column("input_file")

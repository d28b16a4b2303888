"""Tuned models: each trained as a leased operation (LoRA adapter in the blob store), and their permissions.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from localgem.storage.tables import UtcTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tuned_models",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("project", sa.String(40), nullable=False),
        sa.Column("display_name", sa.Text),
        sa.Column("description", sa.Text),
        sa.Column("base_model", sa.Text, nullable=False),
        sa.Column("source_model", sa.Text),
        sa.Column("defaults", sa.Text, nullable=False),
        sa.Column("hyperparameters", sa.Text, nullable=False),
        sa.Column("examples", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("operation_id", sa.String(40), nullable=False),
        sa.Column("total_steps", sa.BigInteger, nullable=False),
        sa.Column("snapshots", sa.Text, nullable=False),
        sa.Column("start_time", UtcTime),
        sa.Column("complete_time", UtcTime),
        sa.Column("adapter", sa.String(64)),
        sa.Column("lease_owner", sa.String(40)),
        sa.Column("lease_until", UtcTime),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("update_time", UtcTime, nullable=False),
    )
    op.create_index("ix_tuned_models_project", "tuned_models", ["project", "create_time"])
    op.create_index("ix_tuned_models_state", "tuned_models", ["state"])
    op.create_table(
        "tuned_model_permissions",
        sa.Column("tuned_model_id", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("grantee_type", sa.String(16), nullable=False),
        sa.Column("email_address", sa.Text),
        sa.Column("grantee", sa.String(40)),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("create_time", UtcTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tuned_model_permissions")
    op.drop_index("ix_tuned_models_state", "tuned_models")
    op.drop_index("ix_tuned_models_project", "tuned_models")
    op.drop_table("tuned_models")

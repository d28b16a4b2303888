"""Batch webhooks: each batch's webhookConfig, the deliveries of its final state, per-project signing secrets.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from localgem.storage.tables import UtcTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("webhook_config", sa.Text))
        table.add_column(sa.Column("webhook_state", sa.String(16)))
        table.create_index("ix_batches_webhook_state", ["webhook_state"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("project", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("batch_id", sa.String(40), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.BigInteger, nullable=False),
        sa.Column("next_attempt", UtcTime, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("update_time", UtcTime, nullable=False),
    )
    op.create_index("ix_webhook_deliveries_state_next_attempt", "webhook_deliveries", ["state", "next_attempt"])
    op.create_table(
        "webhook_secrets",
        sa.Column("project", sa.String(40), primary_key=True),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("create_time", UtcTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_secrets")
    op.drop_index("ix_webhook_deliveries_state_next_attempt", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("batches") as table:
        table.drop_index("ix_batches_webhook_state")
        table.drop_column("webhook_state")
        table.drop_column("webhook_config")

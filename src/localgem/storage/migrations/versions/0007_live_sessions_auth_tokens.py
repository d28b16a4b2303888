"""Live API: resumable session state (by handle) and ephemeral auth tokens.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from localgem.storage.tables import UtcTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "live_sessions",
        sa.Column("handle_digest", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(40), nullable=False),
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("expire_time", UtcTime, nullable=False),
    )
    op.create_index("ix_live_sessions_session_id", "live_sessions", ["session_id"])
    op.create_index("ix_live_sessions_expire_time", "live_sessions", ["expire_time"])
    op.create_table(
        "auth_tokens",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(40), nullable=False),
        sa.Column("uses_left", sa.BigInteger),
        sa.Column("expire_time", UtcTime, nullable=False),
        sa.Column("new_session_expire_time", UtcTime, nullable=False),
        sa.Column("setup", sa.Text),
        sa.Column("field_mask", sa.Text),
        sa.Column("create_time", UtcTime, nullable=False),
    )
    op.create_index("ix_auth_tokens_expire_time", "auth_tokens", ["expire_time"])


def downgrade() -> None:
    op.drop_table("auth_tokens")
    op.drop_table("live_sessions")

"""API keys, blobs, files and resumable upload sessions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from localgem.storage.tables import UtcTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(40), nullable=False),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("create_time", UtcTime, nullable=False),
    )
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("create_time", UtcTime, nullable=False),
    )
    op.create_table(
        "files",
        sa.Column("project", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("display_name", sa.Text),
        sa.Column("mime_type", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("text_sha256", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("update_time", UtcTime, nullable=False),
        sa.Column("expire_time", UtcTime, nullable=False),
    )
    op.create_index("ix_files_project_create_time", "files", ["project", "create_time"])
    op.create_index("ix_files_expire_time", "files", ["expire_time"])
    op.create_index("ix_files_sha256", "files", ["sha256"])
    op.create_index("ix_files_text_sha256", "files", ["text_sha256"])
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("token_digest", sa.String(64), nullable=False),
        sa.Column("project", sa.String(40), nullable=False),
        sa.Column("file_id", sa.String(40), nullable=False),
        sa.Column("display_name", sa.Text),
        sa.Column("mime_type", sa.Text, nullable=False),
        sa.Column("declared_size", sa.BigInteger),
        sa.Column("received", sa.BigInteger, nullable=False),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("expire_time", UtcTime, nullable=False),
        sa.Column("finalized", sa.Boolean, nullable=False),
        sa.UniqueConstraint("token_digest", name="uq_uploads_token_digest"),
    )
    op.create_index("ix_uploads_project_file_id", "uploads", ["project", "file_id"])
    op.create_index("ix_uploads_expire_time", "uploads", ["expire_time"])


def downgrade() -> None:
    op.drop_table("uploads")
    op.drop_table("files")
    op.drop_table("blobs")
    op.drop_table("api_keys")

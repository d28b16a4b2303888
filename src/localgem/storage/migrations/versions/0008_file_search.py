"""File Search: stores, their documents (each ingested as a leased operation), and upload sessions that end in
a document rather than a file; the Semantic Retriever's corpora, documents, chunks and permissions.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from localgem.storage.tables import UtcTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "file_search_stores",
        sa.Column("project", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("display_name", sa.Text),
        sa.Column("embedding_model", sa.Text, nullable=False),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("update_time", UtcTime, nullable=False),
    )
    op.create_index("ix_file_search_stores_project", "file_search_stores", ["project", "create_time"])
    op.create_table(
        "file_search_documents",
        sa.Column("project", sa.String(40), primary_key=True),
        sa.Column("store_id", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("display_name", sa.Text),
        sa.Column("custom_metadata", sa.Text),
        sa.Column("mime_type", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("origin", sa.String(8), nullable=False),
        sa.Column("chunking", sa.Text, nullable=False),
        sa.Column("chunk_count", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(40)),
        sa.Column("lease_until", UtcTime),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("update_time", UtcTime, nullable=False),
    )
    op.create_index("ix_file_search_documents_project", "file_search_documents", ["project", "store_id", "create_time"])
    op.create_index("ix_file_search_documents_state", "file_search_documents", ["state"])
    op.create_index("ix_file_search_documents_sha256", "file_search_documents", ["sha256"])
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("target", sa.Text))
    op.create_table(
        "corpora",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("project", sa.String(40), nullable=False),
        sa.Column("display_name", sa.Text),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("update_time", UtcTime, nullable=False),
    )
    op.create_index("ix_corpora_project", "corpora", ["project", "create_time"])
    op.create_table(
        "corpus_documents",
        sa.Column("corpus_id", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("display_name", sa.Text),
        sa.Column("custom_metadata", sa.Text),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("update_time", UtcTime, nullable=False),
    )
    op.create_table(
        "corpus_chunks",
        sa.Column("corpus_id", sa.String(40), primary_key=True),
        sa.Column("document_id", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("custom_metadata", sa.Text),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("create_time", UtcTime, nullable=False),
        sa.Column("update_time", UtcTime, nullable=False),
    )
    op.create_table(
        "corpus_permissions",
        sa.Column("corpus_id", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("grantee_type", sa.String(16), nullable=False),
        sa.Column("email_address", sa.Text),
        sa.Column("grantee", sa.String(40)),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("create_time", UtcTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("corpus_permissions", "corpus_chunks", "corpus_documents", "corpora"):
        op.drop_table(table)
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("target")
    op.drop_table("file_search_documents")
    op.drop_table("file_search_stores")

"""How many long-running jobs each state holds, across every server sharing the database (for /metrics)."""

from __future__ import annotations

from sqlalchemy import Table, func, select

from localgem.storage.database import Database
from localgem.storage.tables import batches, file_search_documents, generated_files, tuned_models

#: Job kind → the table whose rows are its jobs (each with a ``state`` column).
JOB_TABLES: dict[str, Table] = {
    "batch": batches,
    "tuning": tuned_models,
    "ingest": file_search_documents,
    "video": generated_files,
}


async def job_counts(db: Database) -> dict[tuple[str, str], int]:
    """(kind, state) → jobs."""
    counts: dict[tuple[str, str], int] = {}
    async with db.read() as conn:
        for kind, table in JOB_TABLES.items():
            rows = await conn.execute(select(table.c.state, func.count()).group_by(table.c.state))
            counts.update({(kind, state): count for state, count in rows})
    return counts

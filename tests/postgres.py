"""A throwaway PostgreSQL cluster for the tests: initdb in a temp dir, served on loopback only.

``LOCALGEM_TEST_DATABASE_URL`` points the tests at an existing server instead. Without either, the
PostgreSQL tests skip — unless ``LOCALGEM_REQUIRE_POSTGRES=1`` (set by CI), which makes that a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _binaries() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_user() -> list[str]:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user the Debian package creates."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Yields a server URL (``postgresql://user@127.0.0.1:port``) without a database name."""
    if url := os.environ.get("LOCALGEM_TEST_DATABASE_URL"):
        yield url.rsplit("/", 1)[0]
        return
    bindir = _binaries()
    if bindir is None:
        if os.environ.get("LOCALGEM_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required (LOCALGEM_REQUIRE_POSTGRES=1) but initdb was not found")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="localgem-pg-"))
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        shutil.chown(root, user)
    data = root / "data"
    prefix = _as_user()
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "--no-sync", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=on -c max_connections=200"
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str) -> str:
    """A fresh, empty database on the server; returns its URL."""
    name = "t_" + uuid.uuid4().hex[:12]
    import asyncio

    import asyncpg

    async def create() -> None:
        for attempt in range(50):
            try:
                conn = await asyncpg.connect(server_url + "/postgres")
                break
            except (OSError, asyncpg.CannotConnectNowError):
                if attempt == 49:
                    raise
                time.sleep(0.1)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return f"{server_url}/{name}"

"""Batches survive kill -9 (SQLite and PostgreSQL), and two servers on one PostgreSQL never run a request twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from localgem.storage.batches import SqlBatchRepository
from localgem.storage.database import Database
from tests.conftest import API_KEY
from tests.e2e.test_files_durability import ServerProcess

HEADERS = {"x-goog-api-key": API_KEY}
FAST = {"LOCALGEM_BATCH_LEASE_SECONDS": "2", "LOCALGEM_BATCH_POLL_SECONDS": "0.2"}


def batch_body(count: int, name: str) -> dict:
    requests = [
        {
            "request": {
                "contents": [{"parts": [{"text": f"Say the number {i}."}]}],
                "generationConfig": {"temperature": 0, "maxOutputTokens": 4},
            },
            "metadata": {"key": f"{name}-{i}"},
        }
        for i in range(count)
    ]
    return {"batch": {"displayName": name, "inputConfig": {"requests": {"requests": requests}}}}


def operation(server: ServerProcess, name: str) -> dict:
    return httpx.get(f"{server.url}/v1beta/{name}", headers=HEADERS, timeout=30).json()


def wait(server: ServerProcess, name: str, until, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while not until(found := operation(server, name)):
        assert time.monotonic() < deadline, found["metadata"]
        time.sleep(0.2)
    return found


def recorded(database_url: str, batch_id: str) -> dict[int, str]:
    async def read() -> dict[int, str]:
        db = Database(database_url)
        try:
            items = await SqlBatchRepository(db).items("default", batch_id)
        finally:
            await db.close()
        return {i.position: i.response for i in items if i.done}

    return asyncio.run(read())


def test_kill_9_mid_batch_loses_nothing_and_repeats_nothing(tmp_path: Path, database_url: str) -> None:
    server = ServerProcess(tmp_path / "data", database_url)
    server.env.update(FAST)
    server.start()
    try:
        created = httpx.post(
            f"{server.url}/v1beta/models/gemini-2.5-flash:batchGenerateContent",
            json=batch_body(80, "crash"),
            headers=HEADERS,
            timeout=60,
        ).json()
        wait(server, created["name"], lambda op: int(op["metadata"]["batchStats"]["successfulRequestCount"]) >= 16)
        server.kill()
        batch_id = created["name"].split("/")[1]
        before = recorded(database_url, batch_id)
        assert 16 <= len(before) < 80

        server.start()
        done = wait(server, created["name"], lambda op: op["done"])
        assert done["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
        results = done["response"]["inlinedResponses"]["inlinedResponses"]
        assert [r["metadata"]["key"] for r in results] == [f"crash-{i}" for i in range(80)]
        assert all("response" in r for r in results)
        after = recorded(database_url, batch_id)
        assert len(after) == 80 and all(after[p] == response for p, response in before.items())
    finally:
        server.kill()


def test_two_servers_on_one_postgresql_run_each_request_once(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from tests.postgres import create_database

    url = create_database(request.getfixturevalue("postgres_server"))
    servers = [ServerProcess(tmp_path / f"data{i}", url) for i in range(2)]
    for server in servers:
        server.env.update(FAST)
        server.start()
    try:
        names = [
            httpx.post(
                f"{servers[0].url}/v1beta/models/gemini-2.5-flash:batchGenerateContent",
                json=batch_body(8, f"shared{i}"),
                headers=HEADERS,
                timeout=60,
            ).json()["name"]
            for i in range(3)
        ]
        for name in names:
            done = wait(servers[1], name, lambda op: op["done"])
            assert done["metadata"]["batchStats"]["successfulRequestCount"] == "8"
        started = [
            httpx.get(f"{s.url}/readyz", timeout=30).json()["models"].get("smollm2-135m-instruct", {}) for s in servers
        ]
        assert sum(s.get("requests_started", 0) for s in started) == 24  # no request ran twice
        assert all(s.get("requests_started", 0) > 0 for s in started)  # and both servers took work
    finally:
        for server in servers:
            server.kill()

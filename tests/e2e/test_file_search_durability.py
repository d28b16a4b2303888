"""File Search ingestion survives kill -9: a document whose ingestion was cut short stays PENDING and is
never served half-indexed, and the next server ingests it from the start, replacing what was left behind."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import numpy as np

from localgem.retrieval.index import IndexedChunk
from localgem.retrieval.sqlite_index import SqliteChunkIndex
from tests.conftest import API_KEY
from tests.e2e.test_files_durability import ServerProcess

HEADERS = {"x-goog-api-key": API_KEY}
TEXT = "The lighthouse keeper logs every passing ship in a green notebook. " * 30


def leave_half_indexed(index_path: Path, store: str, document: str) -> None:
    """What a server killed while indexing could leave: some chunks of a document that is not ACTIVE."""

    async def write() -> None:
        index = await SqliteChunkIndex(index_path).open()
        vector = np.ones(384, dtype=np.float32) / np.sqrt(384)
        chunks = [
            IndexedChunk(store, document, f"{document}/chunks/{n}", f"LEFTOVER lighthouse keeper {n}", vector)
            for n in range(3)
        ]
        await index.add(chunks)
        await index.close()

    asyncio.run(write())


def grounding_texts(server: ServerProcess, store: str) -> list[str]:
    body = {
        "contents": [{"parts": [{"text": "Who logs passing ships in the lighthouse?"}]}],
        "tools": [{"fileSearch": {"fileSearchStoreNames": [store]}}],
        "generationConfig": {"maxOutputTokens": 4, "temperature": 0},
    }
    reply = httpx.post(
        f"{server.url}/v1beta/models/gemini-2.5-flash:generateContent", json=body, headers=HEADERS, timeout=120
    )
    assert reply.status_code == 200, reply.text
    chunks = reply.json()["candidates"][0].get("groundingMetadata", {}).get("groundingChunks", [])
    return [c["retrievedContext"]["text"] for c in chunks]


def test_ingestion_cut_short_is_redone_and_never_served_half_done(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ServerProcess(data, f"sqlite+aiosqlite:///{data / 'db.sqlite'}")
    first.env["LOCALGEM_RUN_BATCHES"] = "false"  # an API-only replica: nothing ingests here
    first.start()
    try:
        store = httpx.post(f"{first.url}/v1beta/fileSearchStores", json={"displayName": "log"}, headers=HEADERS).json()
        upload = httpx.post(
            f"{first.url}/upload/v1beta/{store['name']}:uploadToFileSearchStore",
            content=TEXT.encode(),
            headers={**HEADERS, "content-type": "text/plain"},
        ).json()
        assert upload["done"] is False
        document = f"{store['name']}/documents/{upload['name'].rsplit('/', 1)[1]}"
        leave_half_indexed(data / "index.sqlite", store["name"], document)
        assert httpx.get(f"{first.url}/v1beta/{document}", headers=HEADERS).json()["state"] == "STATE_PENDING"
        assert grounding_texts(first, store["name"]) == []  # the leftovers are not served
    finally:
        first.kill()
    second = ServerProcess(data, first.env["LOCALGEM_DATABASE_URL"])
    second.env = {**first.env, "LOCALGEM_RUN_BATCHES": "true"}
    second.start()
    try:
        deadline = time.monotonic() + 120
        while not (operation := httpx.get(f"{second.url}/v1beta/{upload['name']}", headers=HEADERS).json())["done"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert operation["response"]["documentName"] == document
        assert httpx.get(f"{second.url}/v1beta/{document}", headers=HEADERS).json()["state"] == "STATE_ACTIVE"
        texts = grounding_texts(second, store["name"])
        assert texts and not any("LEFTOVER" in t for t in texts)
        assert all(t in TEXT for t in texts)
    finally:
        second.kill()

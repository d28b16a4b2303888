"""File Search on PostgreSQL: the chunk index lives in the server's own database (pgvector + full-text
search), and a store's answer is grounded the same way as on SQLite."""

from __future__ import annotations

import asyncio
import time

from google import genai
from google.genai import types
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from localgem.app import create_app
from localgem.settings import load_settings
from tests.conftest import API_KEY
from tests.pgvector_server import new_database
from tests.server import start_server
from tests.uploads import make_pdf


def rows(url: str, store: str) -> tuple[int, int]:
    """A store's chunks in the PostgreSQL index: rows of text, and of vectors."""

    async def count() -> tuple[int, int]:
        engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
        try:
            async with engine.connect() as db:
                chunks = await db.execute(text("SELECT count(*) FROM chunk_index WHERE store = :s"), {"s": store})
                vectors = await db.execute(
                    text("SELECT count(*) FROM chunk_vectors_384 WHERE store = :s"), {"s": store}
                )
                return chunks.scalar_one(), vectors.scalar_one()
        finally:
            await engine.dispose()

    return asyncio.run(count())


def test_upload_search_and_delete_on_postgresql(tmp_path, pgvector_url: str) -> None:
    settings = load_settings(
        environ={}, data_dir=tmp_path, api_keys=[API_KEY], database_url=new_database(pgvector_url), preload=[]
    )
    server = start_server(create_app(settings))
    try:
        client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
        store = client.file_search_stores.create(config={"display_name": "pg"})
        pdf = tmp_path / "kettle.pdf"
        pdf.write_bytes(make_pdf(["The Zorblax 9000 kettle boils water in exactly 47 seconds."]))
        notes = tmp_path / "pets.md"
        notes.write_text("# Pets\n\nCats like warm places. Dogs like long walks.\n")
        for path in (pdf, notes):
            operation = client.file_search_stores.upload_to_file_search_store(
                file_search_store_name=store.name, file=str(path)
            )
            deadline = time.monotonic() + 120
            while not operation.done:
                assert time.monotonic() < deadline
                time.sleep(0.2)
                operation = client.operations.get(operation)
            assert operation.error is None
        tool = types.Tool(file_search=types.FileSearch(file_search_store_names=[store.name], top_k=1))
        response = client.models.generate_content(
            model="gemini-2.5-flash",
            contents="How long does the Zorblax 9000 take to boil water?",
            config=types.GenerateContentConfig(tools=[tool], temperature=0, max_output_tokens=8),
        )
        (chunk,) = response.candidates[0].grounding_metadata.grounding_chunks
        assert chunk.retrieved_context.title == "kettle.pdf" and chunk.retrieved_context.page_number == 1
        assert rows(settings.database(), store.name) == (2, 2)  # a chunk each, with its vector
        client.file_search_stores.delete(name=store.name, config={"force": True})
        assert rows(settings.database(), store.name) == (0, 0)
        after = client.models.generate_content(
            model="gemini-2.5-flash",
            contents="hello",
            config=types.GenerateContentConfig(max_output_tokens=2),
        )
        assert after.text is not None
    finally:
        server.stop()

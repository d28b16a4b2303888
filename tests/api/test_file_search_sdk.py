"""File Search through google-genai, unchanged but for its base URL: stores, uploads and imports as
operations, documents, and the fileSearch tool grounding a real model's answers in them."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import API_KEY, OTHER_KEY
from tests.server import RunningServer
from tests.uploads import make_pdf

MODEL = "gemini-2.5-flash"
QUESTION = "How long does the Zorblax 9000 take to boil water?"
PDF_LINES = ["The Zorblax 9000 kettle boils water in exactly 47 seconds.", "It is made in Tromso, Norway."]
NOTES = "# Pets\n\nCats like warm places to sleep. Dogs like long walks in the park every morning.\n"


def wait_operation(client: genai.Client, operation, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not operation.done:
        assert time.monotonic() < deadline, f"{operation.name} did not finish"
        time.sleep(0.2)
        operation = client.operations.get(operation)
    return operation


def upload(client: genai.Client, store: str, path: Path, **config):
    operation = client.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store, file=str(path), config=config or None
    )
    return wait_operation(client, operation)


def file_search(store: str, **options) -> types.GenerateContentConfig:
    tool = types.Tool(file_search=types.FileSearch(file_search_store_names=[store], **options))
    return types.GenerateContentConfig(tools=[tool], temperature=0, max_output_tokens=60)


def indexed(server: RunningServer, store: str) -> tuple[int, int, int]:
    """A store's chunks in the server's SQLite index: rows of text, vectors and keyword entries."""
    import sqlean
    import sqlite_vec

    db = sqlean.connect(str(server.app.state.settings.data_dir / "index.sqlite"))
    try:
        db.enable_load_extension(True)
        sqlite_vec.load(db)
        rows = [r for (r,) in db.execute("SELECT id FROM chunks WHERE store = ?", (store,))]
        names = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables = [t for t in names if t.startswith("chunk_vectors_") and t.removeprefix("chunk_vectors_").isdigit()]
        vectors = sum(db.execute(f"SELECT count(*) FROM {t} WHERE store = ?", (store,)).fetchone()[0] for t in tables)
        words = db.execute("SELECT count(*) FROM chunk_words").fetchone()[0]
        return len(rows), vectors, words
    finally:
        db.close()


@pytest.fixture(scope="module")
def other_client(real_server: RunningServer) -> genai.Client:
    return genai.Client(api_key=OTHER_KEY, http_options=types.HttpOptions(base_url=real_server.url))


@pytest.fixture(scope="module")
def manuals(client: genai.Client, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list]:
    """A store holding a PDF manual and a Markdown note, uploaded by the SDK (resumable)."""
    folder = tmp_path_factory.mktemp("docs")
    pdf = folder / "manual.pdf"
    pdf.write_bytes(make_pdf(PDF_LINES))
    notes = folder / "pets.md"
    notes.write_text(NOTES)
    store = client.file_search_stores.create(config={"display_name": "Product manuals"})
    done = [
        upload(client, store.name, pdf, custom_metadata=[{"key": "kind", "string_value": "manual"}]),
        upload(client, store.name, notes, custom_metadata=[{"key": "kind", "string_value": "notes"}]),
    ]
    return store.name, done


def test_answers_are_grounded_in_the_pdf(client: genai.Client, manuals) -> None:
    store, (pdf_op, _) = manuals
    assert pdf_op.error is None and pdf_op.response.document_name.startswith(f"{store}/documents/manual-pdf-")
    response = client.models.generate_content(model=MODEL, contents=QUESTION, config=file_search(store))
    assert "47" in response.text
    metadata = response.candidates[0].grounding_metadata
    first = metadata.grounding_chunks[0].retrieved_context
    assert (first.title, first.file_search_store, first.page_number) == ("manual.pdf", store, 1)
    assert "47 seconds" in first.text and first.custom_metadata[0].string_value == "manual"
    assert metadata.retrieval_queries == [QUESTION]
    cited = [s for s in metadata.grounding_supports or [] if 0 in s.grounding_chunk_indices]
    assert cited, metadata.grounding_supports
    answer = response.text.encode()
    for support in cited:
        segment = support.segment
        assert answer[segment.start_index or 0 : segment.end_index].decode() == segment.text
    usage = response.usage_metadata
    assert usage.tool_use_prompt_token_count > 0
    assert usage.total_token_count == (
        usage.prompt_token_count + usage.tool_use_prompt_token_count + usage.candidates_token_count
    )


def test_streamed_answer_carries_the_same_grounding(client: genai.Client, manuals) -> None:
    store, _ = manuals
    whole = client.models.generate_content(model=MODEL, contents=QUESTION, config=file_search(store))
    chunks = list(client.models.generate_content_stream(model=MODEL, contents=QUESTION, config=file_search(store)))
    assert "".join(c.text or "" for c in chunks) == whole.text
    assert all(c.candidates[0].grounding_metadata is None for c in chunks[:-1])
    assert chunks[-1].candidates[0].grounding_metadata == whole.candidates[0].grounding_metadata


def test_metadata_filter_and_top_k(client: genai.Client, manuals) -> None:
    store, _ = manuals
    notes_only = client.models.generate_content(
        model=MODEL, contents=QUESTION, config=file_search(store, metadata_filter='kind = "notes"', top_k=3)
    )
    titles = {c.retrieved_context.title for c in notes_only.candidates[0].grounding_metadata.grounding_chunks}
    assert titles == {"pets.md"}
    one = client.models.generate_content(model=MODEL, contents=QUESTION, config=file_search(store, top_k=1))
    assert len(one.candidates[0].grounding_metadata.grounding_chunks) == 1
    with pytest.raises(genai_errors.ClientError) as bad:
        client.models.generate_content(
            model=MODEL, contents=QUESTION, config=file_search(store, metadata_filter='kind = "a" AND (')
        )
    assert bad.value.code == 400 and "position 17" in bad.value.message


def test_works_together_with_function_declarations(client: genai.Client, manuals) -> None:
    store, _ = manuals
    weather = types.FunctionDeclaration(
        name="get_weather",
        description="The weather in a city.",
        parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]),
    )
    config = file_search(store)
    config.tools.append(types.Tool(function_declarations=[weather]))
    config.automatic_function_calling = types.AutomaticFunctionCallingConfig(disable=True)
    response = client.models.generate_content(model=MODEL, contents=QUESTION, config=config)
    assert response.candidates[0].grounding_metadata.grounding_chunks
    assert response.candidates[0].finish_reason == types.FinishReason.STOP


def test_documents_counters_and_deletion(client: genai.Client, manuals, tmp_path: Path, real_server) -> None:
    store = client.file_search_stores.create(config={"display_name": "scratch"})
    text = tmp_path / "facts.txt"
    text.write_text("The moon orbits the earth. " * 40)
    metadata = [
        {"key": "author", "string_value": "Ada"},
        {"key": "year", "numeric_value": 1843},
        {"key": "tags", "string_list_value": {"values": ["space", "moon"]}},
    ]
    done = upload(
        client,
        store.name,
        text,
        custom_metadata=metadata,
        chunking_config={"white_space_config": {"max_tokens_per_chunk": 20, "max_overlap_tokens": 2}},
    )
    document = client.file_search_stores.documents.get(name=done.response.document_name)
    assert document.state == types.DocumentState.STATE_ACTIVE and document.mime_type == "text/plain"
    assert document.size_bytes == text.stat().st_size and document.display_name == "facts.txt"
    assert [(m.key, m.string_value, m.numeric_value) for m in document.custom_metadata][:2] == [
        ("author", "Ada", None),
        ("year", None, 1843.0),
    ]
    assert document.custom_metadata[2].string_list_value.values == ["space", "moon"]
    got = client.file_search_stores.get(name=store.name)
    assert (got.active_documents_count, got.size_bytes, got.pending_documents_count) == (1, text.stat().st_size, None)
    chunks, vectors, words = indexed(real_server, store.name)
    assert chunks == vectors > 10  # 20-token chunks of 240 words
    with pytest.raises(genai_errors.ClientError) as refused:
        client.file_search_stores.documents.delete(name=document.name)
    assert refused.value.code == 400 and refused.value.status == "FAILED_PRECONDITION"
    client.file_search_stores.documents.delete(name=document.name, config={"force": True})
    assert indexed(real_server, store.name)[:2] == (0, 0)
    assert indexed(real_server, store.name)[2] == words - chunks
    with pytest.raises(genai_errors.ClientError) as gone:
        client.file_search_stores.documents.get(name=document.name)
    assert gone.value.code == 404
    client.file_search_stores.delete(name=store.name)  # empty now: no force needed
    assert store.name not in [s.name for s in client.file_search_stores.list()]


def test_force_delete_removes_vectors_text_and_blobs(client: genai.Client, tmp_path: Path, real_server) -> None:
    store = client.file_search_stores.create(config={"display_name": "to delete"})
    body = os.urandom(16).hex() + " unique words for this store only"
    path = tmp_path / "unique.txt"
    path.write_text(body)
    upload(client, store.name, path)
    assert indexed(real_server, store.name)[:2] == (1, 1)
    blobs = list(real_server.app.state.settings.blobs().rglob("*"))
    holding = [p for p in blobs if p.is_file() and p.read_bytes() == body.encode()]
    assert len(holding) == 1
    with pytest.raises(genai_errors.ClientError) as refused:
        client.file_search_stores.delete(name=store.name)
    assert refused.value.code == 400 and "non-empty" in refused.value.message
    client.file_search_stores.delete(name=store.name, config={"force": True})
    assert indexed(real_server, store.name)[:2] == (0, 0)
    assert not holding[0].exists()
    with pytest.raises(genai_errors.ClientError) as gone:
        client.file_search_stores.get(name=store.name)
    assert gone.value.code == 404


def test_import_file_and_failed_documents_fail_alone(client: genai.Client, tmp_path: Path) -> None:
    store = client.file_search_stores.create(config={"display_name": "imports"})
    notes = tmp_path / "imported.md"
    notes.write_text(NOTES)
    file = client.files.upload(file=str(notes))
    operation = client.file_search_stores.import_file(file_search_store_name=store.name, file_name=file.name)
    assert operation.name.startswith(f"{store.name}/operations/")
    operation = wait_operation(client, operation)
    assert operation.response.document_name.startswith(f"{store.name}/documents/")
    garbage = tmp_path / "noise.bin"
    garbage.write_bytes(os.urandom(4096))
    failed = upload(client, store.name, garbage)
    assert failed.error is not None and failed.response is None
    state = client.file_search_stores.get(name=store.name)
    assert (state.active_documents_count, state.failed_documents_count) == (1, 1)
    documents = {d.display_name: d.state for d in client.file_search_stores.documents.list(parent=store.name)}
    imported = file.name.removeprefix("files/")  # the file had no display name: its id stands in
    assert documents == {imported: types.DocumentState.STATE_ACTIVE, "noise.bin": types.DocumentState.STATE_FAILED}
    client.file_search_stores.delete(name=store.name, config={"force": True})


def test_another_projects_store_is_not_found(client: genai.Client, other_client: genai.Client, manuals) -> None:
    store, (pdf_op, _) = manuals
    for call in (
        lambda: other_client.file_search_stores.get(name=store),
        lambda: other_client.file_search_stores.documents.get(name=pdf_op.response.document_name),
        lambda: other_client.models.generate_content(model=MODEL, contents=QUESTION, config=file_search(store)),
        lambda: other_client.file_search_stores.delete(name=store, config={"force": True}),
    ):
        with pytest.raises(genai_errors.ClientError) as denied:
            call()
        assert denied.value.code == 404
    assert store not in [s.name for s in other_client.file_search_stores.list()]
    assert client.file_search_stores.get(name=store).active_documents_count == 2


def test_simple_and_multipart_uploads_and_the_size_limit(real_server: RunningServer, client: genai.Client) -> None:
    store = client.file_search_stores.create(config={"display_name": "raw uploads"}).name
    headers = {"x-goog-api-key": API_KEY}
    url = f"{real_server.url}/upload/v1beta/{store}:uploadToFileSearchStore"
    simple = httpx.post(url, content=b"plain words about kettles", headers={**headers, "content-type": "text/plain"})
    assert simple.status_code == 200 and simple.json()["name"].startswith(f"{store}/upload/operations/")
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\ncontent-type: application/json\r\n\r\n{{"displayName": "multi", "customMetadata": '
        f'[{{"key": "n", "numericValue": 7}}]}}\r\n--{boundary}\r\ncontent-type: text/markdown\r\n\r\n# Title\n\nbody'
        f"\r\n--{boundary}--\r\n"
    ).encode()
    multipart = httpx.post(
        url + "?uploadType=multipart",
        content=body,
        headers={**headers, "content-type": f"multipart/related; boundary={boundary}"},
    )
    assert multipart.status_code == 200, multipart.text
    too_big = httpx.post(
        url,
        json={"displayName": "huge"},
        headers={
            **headers,
            "x-goog-upload-protocol": "resumable",
            "x-goog-upload-command": "start",
            "x-goog-upload-header-content-length": str(100 * 1024 * 1024 + 1),
        },
    )
    assert too_big.status_code == 400 and too_big.json()["error"]["status"] == "INVALID_ARGUMENT"
    for operation in (simple.json(), multipart.json()):
        done = wait_operation(
            client, client.operations.get(types.UploadToFileSearchStoreOperation(name=operation["name"]))
        )
        assert done.error is None
    documents = {d.display_name: d for d in client.file_search_stores.documents.list(parent=store)}
    assert documents["multi"].mime_type == "text/markdown" and documents["multi"].custom_metadata[0].numeric_value == 7
    client.file_search_stores.delete(name=store, config={"force": True})


def test_live_and_batches_ground_the_same_way(client: genai.Client, live_client: genai.Client, manuals) -> None:
    store, _ = manuals
    online = client.models.generate_content(model=MODEL, contents=QUESTION, config=file_search(store))
    expected = online.candidates[0].grounding_metadata

    async def live_turn() -> tuple[str, types.GroundingMetadata | None]:
        config = types.LiveConnectConfig(
            response_modalities=["TEXT"], temperature=0, max_output_tokens=60, tools=file_search(store).tools
        )
        text, grounding = [], None
        async with live_client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=config) as session:
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text=QUESTION)]), turn_complete=True
            )
            async for message in session.receive():
                text.append(message.text or "")
                content = message.server_content
                grounding = (content.grounding_metadata if content else None) or grounding
        return "".join(text), grounding

    live_text, live_grounding = asyncio.run(live_turn())
    assert live_text == online.text and live_grounding == expected
    job = client.batches.create(model=MODEL, src=[types.InlinedRequest(contents=QUESTION, config=file_search(store))])
    deadline = time.monotonic() + 120
    while not (job := client.batches.get(name=job.name)).done:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    (answer,) = job.dest.inlined_responses
    assert answer.response.text == online.text
    assert answer.response.candidates[0].grounding_metadata == expected


def test_every_readable_format_is_indexed_and_found(client: genai.Client, tmp_path: Path) -> None:
    import docx

    store = client.file_search_stores.create(config={"display_name": "formats"}).name
    files = {
        "page.html": "<html><head><style>p {color: red}</style></head><body><p>Otters hold hands while "
        "sleeping.</p><script>var hidden = 'walrus';</script></body></html>",
        "table.csv": "animal,fact\nwombat,cube-shaped droppings\n",
        "data.json": '{"animal": "octopus", "fact": "three hearts"}',
        "code.py": "def flamingo_colour():\n    return 'pink from shrimp'\n",
    }
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    document = docx.Document()
    document.add_paragraph("Sea cucumbers breathe through their backsides.")
    document.save(tmp_path / "report.docx")
    for name in [*files, "report.docx"]:
        assert upload(client, store, tmp_path / name).error is None, name
    documents = {d.display_name: d for d in client.file_search_stores.documents.list(parent=store)}
    assert documents["page.html"].mime_type == "text/html" and documents["table.csv"].mime_type == "text/csv"
    assert documents["report.docx"].mime_type.endswith("wordprocessingml.document")
    for question, title, said in (
        ("What do otters do while sleeping?", "page.html", "hold hands"),
        ("What shape are wombat droppings?", "table.csv", "cube-shaped"),
        ("How many hearts does an octopus have?", "data.json", "three hearts"),
        ("Why are flamingos pink?", "code.py", "pink from shrimp"),
        ("How do sea cucumbers breathe?", "report.docx", "backsides"),
    ):
        response = client.models.generate_content(model=MODEL, contents=question, config=file_search(store, top_k=1))
        (chunk,) = response.candidates[0].grounding_metadata.grounding_chunks
        assert chunk.retrieved_context.title == title and said in chunk.retrieved_context.text
        assert "walrus" not in chunk.retrieved_context.text and "color" not in chunk.retrieved_context.text
    client.file_search_stores.delete(name=store, config={"force": True})

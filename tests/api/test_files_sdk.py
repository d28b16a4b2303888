"""The Files API through google-genai, unchanged but for its base URL, with a real model reading files."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import API_KEY, OTHER_KEY
from tests.server import RunningServer
from tests.uploads import make_pdf, sha256_hash

MODEL = "gemini-2.5-flash"
GREEDY = types.GenerateContentConfig(temperature=0, max_output_tokens=24)


@pytest.fixture(scope="module")
def other_client(real_server: RunningServer) -> genai.Client:
    return genai.Client(api_key=OTHER_KEY, http_options=types.HttpOptions(base_url=real_server.url))


def test_upload_text_and_binary_then_get_list_delete(client: genai.Client, tmp_path: Path, real_server) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("a line of notes\n" * 64)  # 1 KB
    binary = tmp_path / "archive.bin"
    binary.write_bytes(os.urandom(50 * 1024 * 1024))
    small = client.files.upload(file=text, config=types.UploadFileConfig(display_name="My notes"))
    large = client.files.upload(file=binary, config=types.UploadFileConfig(mime_type="application/octet-stream"))
    assert small.mime_type == "text/plain" and small.display_name == "My notes" and small.size_bytes == 1024
    assert small.state == types.FileState.ACTIVE and small.source == types.FileSource.UPLOADED
    assert large.size_bytes == 50 * 1024 * 1024 and large.sha256_hash == sha256_hash(binary.read_bytes())
    got = client.files.get(name=large.name)
    assert (got.name, got.sha256_hash, got.expiration_time) == (large.name, large.sha256_hash, large.expiration_time)
    downloaded = httpx.get(f"{real_server.url}/v1/{large.name}:download?alt=media", headers={"x-goog-api-key": API_KEY})
    assert hashlib.sha256(downloaded.content).digest() == hashlib.sha256(binary.read_bytes()).digest()
    names = [f.name for f in client.files.list()]
    assert small.name in names and large.name in names
    client.files.delete(name=large.name)
    with pytest.raises(genai_errors.ClientError) as gone:
        client.files.get(name=large.name)
    assert gone.value.code == 403 and "or it may not exist" in gone.value.message
    client.files.delete(name=small.name)


def test_paging_through_250_files(client: genai.Client, tmp_path: Path) -> None:
    path = tmp_path / "n.txt"
    uploaded = set()
    for i in range(250):
        path.write_text(f"file number {i}")
        uploaded.add(client.files.upload(file=path).name)
    pager = client.files.list(config=types.ListFilesConfig(page_size=100))
    seen = [f.name for f in pager]
    assert uploaded <= set(seen) and len(seen) == len(set(seen))
    for name in uploaded:
        client.files.delete(name=name)


def test_a_model_reads_an_uploaded_file_exactly_as_inline_text(client: genai.Client, tmp_path: Path) -> None:
    story = "Mira keeps bees on the roof of the old library. Every June she sells honey to the baker."
    path = tmp_path / "story.txt"
    path.write_text(story)
    file = client.files.upload(file=path)
    question = "Who buys the honey?"
    with_file = client.models.generate_content(model=MODEL, contents=[file, question], config=GREEDY)
    inline = client.models.generate_content(model=MODEL, contents=[story, question], config=GREEDY)
    assert with_file.text and with_file.text == inline.text
    assert with_file.usage_metadata.prompt_token_count == inline.usage_metadata.prompt_token_count
    counted = client.models.count_tokens(model=MODEL, contents=[file, question])
    assert counted.total_tokens == inline.usage_metadata.prompt_token_count


def test_a_model_reads_a_pdf(client: genai.Client, tmp_path: Path) -> None:
    path = tmp_path / "invoice.pdf"
    path.write_bytes(make_pdf(["Invoice 42", "Total due: 99 EUR"]))
    file = client.files.upload(file=path)
    assert file.mime_type == "application/pdf"
    while file.state == types.FileState.PROCESSING:  # the documented client pattern
        file = client.files.get(name=file.name)
    assert file.state == types.FileState.ACTIVE
    with_file = client.models.generate_content(model=MODEL, contents=[file, "What is the total?"], config=GREEDY)
    inline = client.models.generate_content(
        model=MODEL, contents=["Invoice 42\nTotal due: 99 EUR", "What is the total?"], config=GREEDY
    )
    assert with_file.text == inline.text


def test_another_project_sees_nothing(client: genai.Client, other_client: genai.Client, tmp_path: Path) -> None:
    path = tmp_path / "private.txt"
    path.write_text("only for project default")
    mine = client.files.upload(file=path)
    for call in (lambda: other_client.files.get(name=mine.name), lambda: other_client.files.delete(name=mine.name)):
        with pytest.raises(genai_errors.ClientError) as denied:
            call()
        assert denied.value.code == 403 and "or it may not exist" in denied.value.message
    assert mine.name not in [f.name for f in other_client.files.list()]
    with pytest.raises(genai_errors.ClientError) as refused:
        other_client.models.generate_content(model=MODEL, contents=[mine, "Summarize."], config=GREEDY)
    assert refused.value.code == 403
    assert client.files.get(name=mine.name).state == types.FileState.ACTIVE


def test_what_google_refuses_at_upload_the_sdk_reports(client: genai.Client) -> None:
    # google-genai's own test (tests/files/test_upload.py::test_bad_mime_type).
    with pytest.raises(genai_errors.ClientError, match="Unsupported MIME") as bad_mime:
        client.files.upload(file=io.BytesIO(b"test"), config={"mime_type": "bad/mime_type"})
    assert bad_mime.value.code == 400
    with pytest.raises(genai_errors.ClientError) as refused:
        client.files._register_files(uris=["gs://bucket/image.jpg"])
    assert refused.value.code == 400 and "Google Cloud Storage" in refused.value.message

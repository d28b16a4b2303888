"""Files in S3 (blob_url): google-genai uploads through the resumable protocol to a server whose blob store is
a real S3-compatible server (SeaweedFS, tests/s3_server.py); the bytes are checked in the bucket itself."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google import genai
from google.genai import types

from tests.conftest import API_KEY, start_fake_server
from tests.fakes import FakeEngine
from tests.s3_server import S3Server
from tests.server import RunningServer


@pytest.fixture(scope="module")
def bucket(s3: S3Server) -> str:
    return s3.new_bucket()


@pytest.fixture(scope="module")
def s3_files_server(s3: S3Server, bucket: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_fake_server(
        tmp_path_factory.mktemp("data"),
        FakeEngine(),
        blob_url=f"s3://{bucket}/lg",
        s3_endpoint_url=s3.endpoint_url,
        s3_region=s3.region,
        s3_access_key_id=s3.access_key_id,
        s3_secret_access_key=s3.secret_access_key,
    )
    yield server
    server.stop()


def in_bucket(s3: S3Server, bucket: str, sha256: str) -> bytes:
    return s3.client().get_object(Bucket=bucket, Key=f"lg/blobs/{sha256[:2]}/{sha256}")["Body"].read()


def keys(s3: S3Server, bucket: str, prefix: str) -> list[str]:
    return [obj["Key"] for obj in s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_an_upload_lands_in_the_bucket_by_content_and_a_model_reads_it(
    s3_files_server: RunningServer, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=s3_files_server.url))
    story = "Mira keeps bees on the roof of the old library."
    path = tmp_path / "story.txt"
    path.write_text(story)
    file = client.files.upload(file=path)
    sha = hashlib.sha256(story.encode()).hexdigest()
    assert file.state == types.FileState.ACTIVE and file.size_bytes == len(story)
    assert in_bucket(s3, bucket, sha) == story.encode()
    assert keys(s3, bucket, "lg/partials/") == []  # published: the upload's pieces are gone
    engine = s3_files_server.app.state.engines  # the fake engine sees the file's text in the prompt
    client.models.generate_content(model="gemini-2.5-flash", contents=[file, "Where are the bees?"])
    fake = next(iter(engine.loaded().values())).engine
    assert story in fake.prompts[-1]
    client.files.delete(name=file.name)
    assert keys(s3, bucket, f"lg/blobs/{sha[:2]}/{sha}") == []


def test_a_12_mb_upload_is_joined_by_a_multipart_copy_and_downloads_whole(
    s3_files_server: RunningServer, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=s3_files_server.url))
    data = os.urandom(12 << 20)  # two chunks of the SDK's resumable upload (8 MiB each): two pieces, one blob
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    file = client.files.upload(file=path, config=types.UploadFileConfig(mime_type="application/octet-stream"))
    sha = hashlib.sha256(data).hexdigest()
    assert file.size_bytes == len(data)
    assert in_bucket(s3, bucket, sha) == data
    assert keys(s3, bucket, "lg/partials/") == []
    head = s3.client().head_object(Bucket=bucket, Key=f"lg/blobs/{sha[:2]}/{sha}")
    assert head["ETag"].strip('"').endswith("-2")  # made by a multipart upload of two parts
    downloaded = httpx.get(
        f"{s3_files_server.url}/v1/{file.name}:download?alt=media", headers={"x-goog-api-key": API_KEY}, timeout=60
    )
    assert downloaded.status_code == 200 and hashlib.sha256(downloaded.content).hexdigest() == sha
    client.files.delete(name=file.name)

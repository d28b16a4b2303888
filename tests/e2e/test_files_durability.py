"""Files survive what servers go through: kill -9 mid-upload, interrupted connections, a full disk.

The server runs as a real process (no model loaded) so that it can be killed; SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from localgem.app import create_app
from localgem.settings import load_settings
from tests.conftest import API_KEY
from tests.e2e.test_cli import clean_env, free_port
from tests.fakes import FakeEngine
from tests.server import RunningServer, start_server
from tests.uploads import query_upload, send_chunk, sha256_hash, start_upload

MB = 1024 * 1024


class ServerProcess:
    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.env = {
            **clean_env(data_dir),
            "LOCALGEM_PRELOAD": "",
            "LOCALGEM_API_KEYS": API_KEY,
            "LOCALGEM_DATABASE_URL": database_url,
        }
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "localgem", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("localgem did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "localgem", *args], env=self.env, capture_output=True, text=True, check=True
        ).stdout


@pytest.fixture
def server_process(tmp_path: Path, database_url: str) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", database_url)
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()


def test_kill_9_keeps_every_acknowledged_file_and_no_partial_one(server_process: ServerProcess, tmp_path) -> None:
    # A key made with the CLI, for its own project, in the same database the server uses.
    key = server_process.cli("keys", "create", "--project", "durable").strip()
    server_process.start()
    client = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=server_process.url))
    rng = random.Random(7)
    acknowledged: dict[str, bytes] = {}
    for i, size in enumerate([0, 1, 1000, 300_000, 2 * MB + 17, 9 * MB]):
        path = tmp_path / f"file{i}.bin"
        path.write_bytes(rng.randbytes(size))
        file = client.files.upload(file=path, config={"mime_type": "application/octet-stream"})
        acknowledged[file.name] = path.read_bytes()

    big = rng.randbytes(40 * MB)
    url = start_upload(server_process.url, key, len(big)).headers["x-goog-upload-url"]
    acked = 0
    progress = threading.Event()

    def upload_until_killed() -> None:
        nonlocal acked
        try:
            while acked < len(big):
                step = MB
                response = send_chunk(url, big[acked : acked + step], acked, finalize=acked + step >= len(big))
                if response.status_code != 200:
                    return
                acked = int(response.headers["x-goog-upload-size-received"])
                progress.set()
                time.sleep(0.02)  # a client on a slow link: the kill must land mid-upload on any machine
        except httpx.TransportError:
            return

    uploader = threading.Thread(target=upload_until_killed)
    uploader.start()
    assert progress.wait(30)
    time.sleep(rng.uniform(0.05, 0.4))
    server_process.kill()
    uploader.join(timeout=30)
    assert 0 < acked < len(big), "the kill should land mid-upload"

    server_process.start()
    listed = {file.name: file for file in client.files.list()}
    assert set(listed) == set(acknowledged), "exactly the acknowledged files, none partial"
    for name, data in acknowledged.items():
        assert listed[name].state == "ACTIVE" and listed[name].size_bytes == len(data)
        assert listed[name].sha256_hash == sha256_hash(data)
        downloaded = httpx.get(
            f"{server_process.url}/v1beta/{name}:download?alt=media", headers={"x-goog-api-key": key}
        )
        assert hashlib.sha256(downloaded.content).digest() == hashlib.sha256(data).digest()

    # The interrupted upload resumes where the server says it stopped: at least what it acknowledged.
    received = int(query_upload(url).headers["x-goog-upload-size-received"])
    assert acked <= received < len(big)
    while received < len(big):
        response = send_chunk(url, big[received : received + 8 * MB], received, finalize=received + 8 * MB >= len(big))
        assert response.status_code == 200, response.text
        received = int(response.headers["x-goog-upload-size-received"])
    assert response.json()["file"]["sha256Hash"] == sha256_hash(big)
    assert len(list(client.files.list())) == len(acknowledged) + 1
    # The default project (the API_KEY of settings) sees none of it.
    other = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server_process.url))
    assert list(other.files.list()) == []
    with pytest.raises(genai_errors.ClientError) as missing:
        other.files.get(name=next(iter(acknowledged)))
    assert missing.value.code == 403


def test_a_64_mb_upload_interrupted_at_random_offsets_resumes_to_the_right_hash(fake_server: RunningServer) -> None:
    rng = random.Random(1234)
    data = rng.randbytes(64 * MB)
    url = start_upload(fake_server.url, API_KEY, len(data)).headers["x-goog-upload-url"]
    interruptions = 0
    offset = 0
    while offset < len(data):
        size = rng.randint(1 * MB, 12 * MB)
        end = min(offset + size, len(data))
        if rng.random() < 0.5:
            cut = rng.randint(offset, end - 1)
            with pytest.raises(ConnectionError, match="network down"):  # the client's own failure, as raised
                _send_then_drop(url, offset, data[offset:cut], declared=end - offset)
            interruptions += 1
            offset = int(query_upload(url).headers["x-goog-upload-size-received"])
            continue
        response = send_chunk(url, data[offset:end], offset, finalize=end == len(data))
        assert response.status_code == 200, response.text
        offset = int(response.headers["x-goog-upload-size-received"])
    assert interruptions >= 3
    file = response.json()["file"]
    assert file["sha256Hash"] == sha256_hash(data) and file["sizeBytes"] == str(len(data))
    downloaded = httpx.get(f"{fake_server.url}/v1beta/{file['name']}:download", headers={"x-goog-api-key": API_KEY})
    assert downloaded.content == data


def _send_then_drop(url: str, offset: int, sent: bytes, declared: int) -> None:
    """Announces ``declared`` bytes, sends ``sent``, then drops the connection, as a failing network does."""

    def body() -> Iterator[bytes]:
        for start in range(0, len(sent), 256 * 1024):
            yield sent[start : start + 256 * 1024]
        raise ConnectionError("network down")

    headers = {"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": str(offset), "Content-Length": str(declared)}
    httpx.post(url, headers=headers, content=body(), timeout=60)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB filesystem for the blob store (a tmpfs; needs root, as CI and these machines have)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_fails_cleanly_and_uploads_work_once_space_is_free(tmp_path: Path, small_disk: Path) -> None:
    settings = load_settings(environ={}, data_dir=tmp_path / "data", api_keys=[API_KEY], blob_dir=small_disk)
    engine = FakeEngine()
    server = start_server(create_app(settings, engine_factory=lambda entry: engine))
    key = {"x-goog-api-key": API_KEY}
    try:
        first = os.urandom(3 * MB)
        url = start_upload(server.url, API_KEY, len(first)).headers["x-goog-upload-url"]
        assert send_chunk(url, first, 0, finalize=True).status_code == 200
        ballast = small_disk / "ballast"
        ballast.write_bytes(b"\0" * (4 * MB))
        second = os.urandom(3 * MB)
        url = start_upload(server.url, API_KEY, len(second)).headers["x-goog-upload-url"]
        failed = send_chunk(url, second, 0, finalize=True)
        assert failed.status_code == 429 and "out of storage space" in failed.json()["error"]["message"]
        assert query_upload(url).headers["x-goog-upload-size-received"] == "0"
        assert len(httpx.get(f"{server.url}/v1beta/files", headers=key).json()["files"]) == 1
        ballast.unlink()
        done = send_chunk(url, second, 0, finalize=True)
        assert done.status_code == 200 and done.json()["file"]["sha256Hash"] == sha256_hash(second)
        assert len(httpx.get(f"{server.url}/v1beta/files", headers=key).json()["files"]) == 2
    finally:
        server.stop()

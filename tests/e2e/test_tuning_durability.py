"""A tuning job survives kill -9 of its server: the trainer dies with the server, the job stays CREATING under a
lease that lapses, and the next server resumes it from its last checkpoint (the steps trained before it are not
trained again) to an ACTIVE model that serves.

On SQLite, the default database (a training run costs minutes of the suite's CPU budget). The same lease
protocol on PostgreSQL — claimed once, renewed only by its holder, taken over once it lapses — is the storage
contract's tuned-models test, which runs on both databases; and two servers on one PostgreSQL sharing leased work
is tests/e2e/test_batch_durability.py."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import API_KEY, SMOLLM
from tests.e2e.test_files_durability import ServerProcess
from tests.tuning_data import examples, split

HEADERS = {"x-goog-api-key": API_KEY}


def trainers(data: Path) -> int:
    return len(subprocess.run(["pgrep", "-f", str(data / "tuning")], capture_output=True, text=True).stdout.split())


def test_a_job_killed_mid_training_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'localgem.db'}"
    data = tmp_path / "data"
    first = ServerProcess(data, database_url)
    first.env |= {
        "LOCALGEM_BATCH_LEASE_SECONDS": "3",
        "LOCALGEM_TUNING_CHECKPOINT_SECONDS": "1",
        "LOCALGEM_TUNING_THREADS": "2",
    }
    first.start()
    body = {
        "baseModel": f"models/{SMOLLM}",
        "tuningTask": {
            "hyperparameters": {"epochCount": 1, "batchSize": 2},
            "trainingData": {"examples": {"examples": examples(split()[0][:10])}},
        },
    }
    try:
        created = httpx.post(
            f"{first.url}/v1beta/tunedModels",
            params={"tunedModelId": "durable"},
            json=body,
            headers=HEADERS,
            timeout=120,
        )
        assert created.status_code == 200, created.text
        operation = created.json()["name"]
        deadline = time.monotonic() + 300
        while True:
            before = httpx.get(f"{first.url}/v1beta/{operation}", headers=HEADERS).json()
            if before["metadata"]["completedSteps"] >= 2 and list(data.glob("tuning/*/checkpoint.pt")):
                break
            assert time.monotonic() < deadline, before
            time.sleep(0.2)
        assert trainers(data) == 1
    finally:
        first.kill()
    deadline = time.monotonic() + 10
    while trainers(data):  # the trainer dies with its server
        assert time.monotonic() < deadline, "the trainer outlived its server"
        time.sleep(0.1)
    second = ServerProcess(data, database_url)
    second.env = first.env
    second.start()
    try:
        deadline = time.monotonic() + 400
        while not (after := httpx.get(f"{second.url}/v1beta/{operation}", headers=HEADERS).json())["done"]:
            assert time.monotonic() < deadline, after
            time.sleep(0.5)
        assert "error" not in after, after
        assert after["response"]["state"] == "ACTIVE"
        snapshots = after["metadata"]["snapshots"]
        assert [s["step"] for s in snapshots] == list(range(1, 6))
        # Resumed, not restarted: the first steps are the ones the killed server recorded.
        assert snapshots[0] == before["metadata"]["snapshots"][0]
        reply = httpx.post(
            f"{second.url}/v1beta/tunedModels/durable:generateContent",
            json={
                "contents": [{"parts": [{"text": "What color is snow?"}]}],
                "generationConfig": {"maxOutputTokens": 8},
            },
            headers=HEADERS,
            timeout=120,
        )
        assert reply.status_code == 200, reply.text
        assert not list(data.glob("tuning/*"))  # the training folder went with the job's end
    finally:
        second.kill()

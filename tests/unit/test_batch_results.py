"""A batch's results: its results file is written once, when the batch ends (by its executor, by a cancel, or
by the settling duty for a batch found ended without one), never by a read; and a batch reads back as the
same Operation JSON as before results and operations became typed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from localgem.batches.results import BatchResults
from localgem.batches.service import BatchService
from localgem.batches.wire import GenerateContentBatch
from localgem.files.service import FileLimits, FileService
from localgem.operations.runner import Lease, Runner
from localgem.storage.batches import SqlBatchRepository
from localgem.storage.blobs import LocalBlobStore
from localgem.storage.database import Database
from localgem.storage.files import SqlFileRepository
from localgem.storage.records import BatchItem, BatchRecord

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main."


@dataclass
class Parts:
    repo: SqlBatchRepository
    files: FileService
    runner: Runner
    service: BatchService


class NotRun:
    async def run(self, record: BatchRecord, lease: Lease) -> str | None:
        raise AssertionError("no batch runs in these tests")


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'batches.db'}")
    await database.migrate()
    repo = SqlBatchRepository(database)
    limits = FileLimits(2**30, 2**32, timedelta(hours=48), timedelta(hours=1))
    files = FileService(SqlFileRepository(database), LocalBlobStore(tmp_path / "blobs"), limits, lambda: T0)
    runner = Runner(lambda: T0, owner="runner")
    runner.register("generate", NotRun(), repo)  # the runner cancels here; nothing runs
    results = BatchResults(repo, files)
    yield Parts(repo, files, runner, BatchService(repo, None, files, results, runner, lambda: T0))  # type: ignore[arg-type]
    await database.close()


async def a_batch(repo: SqlBatchRepository, batch_id: str, done: int, **fields) -> BatchRecord:
    """A batch of three requests, claimed, with its first ``done`` answered (the second one failed)."""
    record = BatchRecord("p", batch_id, "generate", "models/m", "nightly", "BATCH_STATE_PENDING", 0, 0, T0, T0)

    async def items() -> AsyncIterator[list[BatchItem]]:
        yield [BatchItem(i, "{}", json.dumps({"key": f"k{i}"})) for i in range(3)]

    await repo.add(replace(record, **fields), items())
    claimed = await repo.claim("runner", T0, T0 + timedelta(seconds=30))
    answered = [
        replace(item, error='{"code": 3, "message": "bad"}')
        if item.position == 1
        else replace(item, response='{"n": 1}')
        for item in (await repo.items("p", batch_id))[:done]
    ]
    assert await repo.record("runner", claimed, answered, T0, T0 + timedelta(seconds=30))
    return claimed


async def results_file(parts: Parts, name: str) -> list[dict]:
    _, chunks = await parts.files.content("p", name)
    return [json.loads(line) for line in b"".join([c async for c in chunks]).splitlines()]


async def generated(parts: Parts) -> list[str]:
    files, _ = await parts.files.page("p", 100, None)
    return [f.name for f in files if f.source == "GENERATED"]


async def test_a_cancel_writes_the_results_file_and_reads_only_read_it(parts: Parts) -> None:
    await a_batch(parts.repo, "b1", done=2, input_file="input")
    await parts.service.cancel("p", "batches/b1")
    operation = await parts.service.get("p", "batches/b1")
    assert operation.done and operation.metadata.state == "BATCH_STATE_CANCELLED"
    name = operation.response.responses_file
    assert operation.metadata.output.responses_file == name and name.startswith("files/")
    assert await results_file(parts, name) == [
        {"key": "k0", "response": {"n": 1}},
        {"key": "k1", "error": {"code": 3, "message": "bad"}},
    ]
    assert (await parts.service.get("p", "batches/b1")).response.responses_file == name
    assert await generated(parts) == [name]  # one file, however often the batch is read


async def test_a_batch_found_ended_without_its_results_file_gets_it_from_the_settling_duty(parts: Parts) -> None:
    # Expired (or cancelled before results files were written at the end): ended, with no results file yet.
    hook = json.dumps({"uris": ["http://receiver.example/hook"]})
    await a_batch(parts.repo, "b1", done=1, input_file="input", webhook_config=hook, webhook_state="PENDING")
    assert await parts.repo.expire(T0 + timedelta(seconds=1), T0) == 1
    operation = await parts.service.get("p", "batches/b1")
    assert operation.done and operation.response is None and operation.metadata.output is None
    assert (await parts.repo.get("p", "b1")).responses_file is None and await generated(
        parts
    ) == []  # reads write nothing
    assert await parts.repo.awaiting_webhooks(10) == []  # its event names the results file: not queued before it

    assert await parts.service.settle() is None
    name = (await parts.service.get("p", "batches/b1")).response.responses_file
    assert await results_file(parts, name) == [{"key": "k0", "response": {"n": 1}}]
    assert [b.id for b in await parts.repo.awaiting_webhooks(10)] == ["b1"]
    assert await parts.repo.unwritten_results(10) == []
    await parts.service.settle()
    assert await generated(parts) == [name]


async def test_a_batch_reads_back_as_the_same_operation_json(parts: Parts) -> None:
    claimed = await a_batch(parts.repo, "b1", done=3, priority=5)
    running = (await parts.service.get("p", "batches/b1")).to_wire()
    metadata = {
        "@type": TYPE + "GenerateContentBatch",
        "name": "batches/b1",
        "model": "models/m",
        "displayName": "nightly",
        "state": "BATCH_STATE_RUNNING",
        "createTime": "2026-01-01T12:00:00.000000Z",
        "updateTime": "2026-01-01T12:00:00.000000Z",
        "batchStats": {
            "requestCount": "3",
            "successfulRequestCount": "2",
            "failedRequestCount": "1",
            "pendingRequestCount": "0",
        },
        "priority": "5",
    }
    assert running == {"name": "batches/b1", "metadata": metadata, "done": False}

    assert await parts.repo.finish("runner", claimed, "BATCH_STATE_SUCCEEDED", T0 + timedelta(seconds=1))
    output = {
        "inlinedResponses": {
            "inlinedResponses": [
                {"response": {"n": 1}, "metadata": {"key": "k0"}},
                {"error": {"code": 3, "message": "bad"}, "metadata": {"key": "k1"}},
                {"response": {"n": 1}, "metadata": {"key": "k2"}},
            ]
        }
    }
    ended = {
        **metadata,
        "state": "BATCH_STATE_SUCCEEDED",
        "updateTime": "2026-01-01T12:00:01.000000Z",
        "endTime": "2026-01-01T12:00:01.000000Z",
    }
    assert (await parts.service.get("p", "batches/b1")).to_wire() == {
        "name": "batches/b1",
        "metadata": {**ended, "output": output},
        "done": True,
        "response": {"@type": TYPE + "GenerateContentBatchOutput", **output},
    }
    # Lists and webhooks leave inline results to batches.get.
    assert (await parts.service.list("p", "batches", None, None)).to_wire() == {
        "operations": [{"name": "batches/b1", "metadata": ended, "done": True}]
    }
    renamed = await parts.service.update(
        "p", "batches/b1", "generate", GenerateContentBatch(display_name="renamed"), "displayName"
    )
    resource = {k: v for k, v in ended.items() if k != "@type"}  # the resource alone, not an Operation's metadata
    assert renamed.to_wire() == {
        **resource,
        "displayName": "renamed",
        "updateTime": metadata["updateTime"],
        "output": output,
    }

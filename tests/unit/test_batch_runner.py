"""The batch executors' window: requests kept in flight, every result recorded once, requests handed
back run again, and a cancelled batch stops its requests at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from localgem.batches.executors import run_window
from localgem.operations.runner import Lease
from localgem.storage.batches import SqlBatchRepository
from localgem.storage.database import Database
from localgem.storage.records import BatchItem, BatchRecord

OWNER = "runner-1"


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[SqlBatchRepository]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'batches.db'}")
    await database.migrate()
    yield SqlBatchRepository(database)
    await database.close()


async def claimed(repo: SqlBatchRepository, count: int) -> tuple[BatchRecord, Lease]:
    now = datetime.now(UTC)
    record = BatchRecord("p", "b1", "generate", "models/m", None, "BATCH_STATE_PENDING", 0, 0, now, now)

    async def items() -> AsyncIterator[list[BatchItem]]:
        yield [BatchItem(i, "{}") for i in range(count)]

    await repo.add(record, items())
    taken = await repo.claim(OWNER, now, now + timedelta(days=365))
    assert taken is not None
    return taken, Lease(repo, OWNER, taken, timedelta(days=365), lambda: datetime.now(UTC))


async def test_every_request_runs_once_within_the_window(repo: SqlBatchRepository) -> None:
    record, lease = await claimed(repo, 150)
    in_flight, most, runs = 0, 0, []

    async def run(_: BatchRecord, group: list[BatchItem]) -> list[BatchItem]:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        runs.extend(item.position for item in group)
        await asyncio.sleep(0)  # all of a window finish together
        in_flight -= 1
        return [replace(item, response=f'{{"n": {item.position}}}') for item in group]

    assert await run_window(repo, record, lease, run, 64, 2)
    assert sorted(runs) == list(range(150)) and most == 2
    items = await repo.items("p", "b1")
    assert all(i.done and i.response == f'{{"n": {i.position}}}' for i in items)


async def test_requests_handed_back_run_again(repo: SqlBatchRepository) -> None:
    record, lease = await claimed(repo, 20)
    tries: dict[int, int] = {}

    async def run(_: BatchRecord, group: list[BatchItem]) -> list[BatchItem]:
        for item in group:
            tries[item.position] = tries.get(item.position, 0) + 1
        # Odd requests find the engine full the first time.
        return [replace(i, response="{}") for i in group if i.position % 2 == 0 or tries[i.position] > 1]

    assert await run_window(repo, record, lease, run, 1, 8)
    assert all(i.done for i in await repo.items("p", "b1"))
    assert tries == {i: 1 if i % 2 == 0 else 2 for i in range(20)}


async def test_a_cancelled_batch_stops_its_requests(repo: SqlBatchRepository) -> None:
    record, lease = await claimed(repo, 30)
    started, stopped = 0, 0
    window_full = asyncio.Event()

    async def run(_: BatchRecord, group: list[BatchItem]) -> list[BatchItem]:
        nonlocal started, stopped
        started += 1
        if started == 4:
            window_full.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped += 1
            raise
        return group

    window = asyncio.ensure_future(run_window(repo, record, lease, run, 1, 4))
    await asyncio.wait_for(window_full.wait(), 5)
    assert await repo.cancel("p", "b1", datetime.now(UTC))
    assert await asyncio.wait_for(window, 3) is False  # the lease renewal finds it cancelled
    assert started == stopped == 4 and lease.lost
    assert [i.position for i in await repo.pending("p", "b1", 100)] == list(range(30))  # nothing recorded

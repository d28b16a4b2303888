"""The operations runner with a toy kind of operation, over real SQLite (the batches table as its store):
claims, leases that lapse and pass to another runner, the heartbeat, cancel, expiry, results recorded once,
kinds nobody here runs; and the Worker that drives it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from localgem.operations.runner import Lease, Runner, Worker
from localgem.storage.batches import SqlBatchRepository
from localgem.storage.database import Database
from localgem.storage.records import BatchItem, BatchRecord

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
LEASE = timedelta(seconds=30)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlBatchRepository]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'operations.db'}")
    await database.migrate()
    yield SqlBatchRepository(database)
    await database.close()


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Toy:
    """A toy executor: answers each pending step with its runner's name, one result per lease renewal."""

    name: str
    store: SqlBatchRepository
    gate: asyncio.Event | None = None  # waited on before anything is recorded
    stall_after: int | None = None  # records this many, then hangs (a server that stopped mid-operation)
    fail: bool = False
    started: asyncio.Event = field(default_factory=asyncio.Event)
    stalled: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: int = 0  # runs stopped from outside while running

    async def run(self, record: BatchRecord, lease: Lease) -> str | None:
        self.started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail:
                raise RuntimeError("the toy broke")
            for n, item in enumerate(await self.store.pending(record.project, record.id, 1000)):
                if n == self.stall_after:
                    self.stalled.set()
                    await asyncio.Event().wait()
                if not await lease.renew([replace(item, response=f'"{self.name}"')]):
                    return None
        except asyncio.CancelledError:
            self.stopped += 1
            raise
        return "BATCH_STATE_SUCCEEDED"


async def add(store: SqlBatchRepository, op_id: str, kind: str = "toy", steps: int = 4, at: datetime = T0) -> None:
    record = BatchRecord("p", op_id, kind, "models/m", None, "BATCH_STATE_PENDING", 0, 0, at, at)

    async def items() -> AsyncIterator[list[BatchItem]]:
        yield [BatchItem(i, "{}") for i in range(steps)]

    await store.add(record, items())


async def answers(store: SqlBatchRepository, op_id: str) -> list[str | None]:
    return [i.response for i in await store.items("p", op_id)]


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def a_runner(clock: Clock, owner: str, **kwargs) -> tuple[Runner, list[str]]:
    runner = Runner(clock, lease=LEASE, deadline=timedelta(hours=48), owner=owner, **kwargs)
    ended: list[str] = []
    runner.when_ended(lambda: ended.append(owner))
    return runner, ended


async def test_an_operation_is_claimed_once_run_and_finished(store: SqlBatchRepository) -> None:
    clock = Clock()
    runners = [a_runner(clock, f"r{i}") for i in range(3)]
    toys = [Toy(f"r{i}", store) for i in range(3)]
    for (runner, _), toy in zip(runners, toys, strict=True):
        runner.register("toy", toy, store)
    await add(store, "op1")

    ran = await asyncio.gather(*(runner.run_once() for runner, _ in runners))
    assert sorted(ran) == [False, False, True]  # one runner took it; the others found nothing
    [winner] = [i for i, r in enumerate(ran) if r]
    assert [t.started.is_set() for t in toys] == [i == winner for i in range(3)]
    assert await answers(store, "op1") == [f'"r{winner}"'] * 4
    done = await store.get("p", "op1")
    assert done.state == "BATCH_STATE_SUCCEEDED" and done.end_time == T0 and done.lease_owner is None
    assert [ended for _, ended in runners] == [[f"r{winner}"] if i == winner else [] for i in range(3)]
    assert not await runners[winner][0].run_once()  # finished: not claimed again


async def test_a_kind_without_an_executor_here_is_left_to_a_runner_that_has_one(store: SqlBatchRepository) -> None:
    clock = Clock()
    runner, _ = a_runner(clock, "r1")
    runner.register("toy", Toy("r1", store), store)
    with pytest.raises(ValueError):
        runner.register("toy", Toy("again", store), store)
    await add(store, "odd", kind="mystery")
    assert not await runner.run_once()
    assert (await store.get("p", "odd")).state == "BATCH_STATE_PENDING"
    other, _ = a_runner(clock, "r2")
    other.register("mystery", Toy("r2", store), store)
    assert await other.run_once()
    assert await answers(store, "odd") == ['"r2"'] * 4


async def test_a_lapsed_lease_passes_to_another_runner_and_results_are_recorded_once(
    store: SqlBatchRepository,
) -> None:
    clock = Clock()
    first, _ = a_runner(clock, "first")
    toy = Toy("first", store, stall_after=2)
    first.register("toy", toy, store)
    await add(store, "op1")
    # The first runner records two results, then its server dies mid-operation, still holding the lease.
    dying = asyncio.ensure_future(first.run_once())
    await asyncio.wait_for(toy.stalled.wait(), 5)
    dying.cancel()
    await asyncio.gather(dying, return_exceptions=True)
    held = await store.get("p", "op1")
    assert held.lease_owner == "first" and held.lease_until == T0 + LEASE

    second, ended = a_runner(clock, "second")
    second.register("toy", Toy("second", store), store)
    assert not await second.run_once()  # the lease holds
    clock.now = T0 + LEASE + timedelta(seconds=1)
    assert await second.run_once()  # lapsed: taken over
    assert await answers(store, "op1") == ['"first"', '"first"', '"second"', '"second"']
    assert (await store.get("p", "op1")).state == "BATCH_STATE_SUCCEEDED" and ended == ["second"]

    # The first runner, back late, can neither record nor renew: a done result is never rewritten.
    late = Lease(store, "first", held, LEASE, clock)
    assert not await late.renew([replace(i, response='"late"') for i in await store.items("p", "op1")])
    assert late.lost and await answers(store, "op1") == ['"first"', '"first"', '"second"', '"second"']


async def test_the_heartbeat_holds_the_lease_of_a_long_step_and_stops_it_once_lost(
    store: SqlBatchRepository,
) -> None:
    clock = Clock()
    lease = timedelta(seconds=1)
    first = Runner(clock, lease=lease, heartbeat=0.02, owner="first")
    toy = Toy("first", store, gate=asyncio.Event())  # a long step that records nothing meanwhile
    first.register("toy", toy, store)
    await add(store, "op1")
    running = asyncio.ensure_future(first.run_once())
    await asyncio.wait_for(toy.started.wait(), 5)
    assert first.running == {("toy", "p", "op1")}

    # For several lease lengths the heartbeat keeps the lease its runner's.
    for _ in range(3):
        clock.now += lease
        await until(lambda: _lease_until(store, clock.now + lease))
        second = Runner(clock, lease=lease, owner="second")
        second.register("toy", Toy("second", store), store)
        assert not await second.run_once()

    # A runner whose clock is far ahead (the first server's beats no longer land in time) takes over; the
    # first runner's next beat finds the lease gone and stops its executor at once.
    taker = Runner(Clock(clock.now + timedelta(seconds=10)), lease=lease, owner="taker")
    taker.register("toy", Toy("taker", store), store)
    assert await taker.run_once()
    assert await asyncio.wait_for(running, 5) is True
    assert toy.stopped == 1 and first.running == frozenset()
    assert await answers(store, "op1") == ['"taker"'] * 4
    assert (await store.get("p", "op1")).state == "BATCH_STATE_SUCCEEDED"


async def _lease_until(store: SqlBatchRepository, at_least: datetime) -> bool:
    record = await store.get("p", "op1")
    return record.lease_until is not None and record.lease_until >= at_least


async def test_cancel_stops_a_running_operation_and_ends_it_once(store: SqlBatchRepository) -> None:
    clock = Clock()
    runner, ended = a_runner(clock, "r1", heartbeat=0.02)
    toy = Toy("r1", store, gate=asyncio.Event())
    runner.register("toy", toy, store)
    await add(store, "op1")
    running = asyncio.ensure_future(runner.run_once())
    await asyncio.wait_for(toy.started.wait(), 5)

    assert await runner.cancel("toy", "p", "op1")
    assert ended == ["r1"]
    assert await asyncio.wait_for(running, 5) is True  # ran, and left it when its heartbeat found it cancelled
    assert toy.stopped == 1
    cancelled = await store.get("p", "op1")
    assert cancelled.state == "BATCH_STATE_CANCELLED" and cancelled.end_time == T0 and cancelled.lease_owner is None
    assert await answers(store, "op1") == [None] * 4
    assert not await runner.cancel("toy", "p", "op1")  # ended already
    assert not await runner.run_once() and ended == ["r1"]


async def test_a_recording_executor_stops_as_soon_as_its_operation_is_cancelled(store: SqlBatchRepository) -> None:
    clock = Clock()
    runner, _ = a_runner(clock, "r1")
    first_recorded = asyncio.Event()

    class Recorder:
        async def run(self, record: BatchRecord, lease: Lease) -> str | None:
            for item in await store.pending(record.project, record.id, 100):
                if not await lease.renew([replace(item, response='"r1"')]):
                    return None
                first_recorded.set()
                await asyncio.sleep(0.01)
            return "BATCH_STATE_SUCCEEDED"

    runner.register("toy", Recorder(), store)
    await add(store, "op1", steps=1000)
    running = asyncio.ensure_future(runner.run_once())
    await asyncio.wait_for(first_recorded.wait(), 5)
    assert await runner.cancel("toy", "p", "op1")
    assert await asyncio.wait_for(running, 5)
    recorded = [a for a in await answers(store, "op1") if a is not None]
    assert 1 <= len(recorded) < 1000
    assert (await store.get("p", "op1")).state == "BATCH_STATE_CANCELLED"  # not overwritten by a finish


async def test_operations_past_their_deadline_expire(store: SqlBatchRepository) -> None:
    clock = Clock(T0 + timedelta(hours=48, seconds=1))
    runner, ended = a_runner(clock, "r1")
    runner.register("toy", Toy("r1", store), store)
    await add(store, "old", at=T0)
    await add(store, "new", at=T0 + timedelta(hours=1))
    assert await runner.step() == 0.0  # expired "old", ran "new": look again at once
    assert (await store.get("p", "old")).state == "BATCH_STATE_EXPIRED"
    assert (await store.get("p", "new")).state == "BATCH_STATE_SUCCEEDED"
    assert ended == ["r1", "r1"]
    assert await answers(store, "old") == [None] * 4
    assert await runner.step() is None  # nothing left: wait for a wake or the next poll


async def test_an_executor_that_fails_leaves_its_lease_to_lapse(store: SqlBatchRepository) -> None:
    clock = Clock()
    broken, ended = a_runner(clock, "broken")
    broken.register("toy", Toy("broken", store, fail=True), store)
    await add(store, "op1")
    with pytest.raises(RuntimeError, match="the toy broke"):
        await broken.run_once()
    held = await store.get("p", "op1")
    assert held.state == "BATCH_STATE_RUNNING" and held.lease_owner == "broken" and ended == []
    fixed, _ = a_runner(clock, "fixed")
    fixed.register("toy", Toy("fixed", store), store)
    assert not await fixed.run_once()
    clock.now += LEASE + timedelta(seconds=1)
    assert await fixed.run_once()
    assert await answers(store, "op1") == ['"fixed"'] * 4


async def test_the_worker_wakes_each_duty_and_survives_a_failing_step() -> None:
    worker = Worker(poll_interval=60)
    rounds = {"quick": 0, "flaky": 0}
    woken = asyncio.Event()

    async def quick() -> float | None:
        rounds["quick"] += 1
        return None

    async def flaky() -> float | None:
        rounds["flaky"] += 1
        if rounds["flaky"] == 1:
            raise RuntimeError("a database hiccup")
        if rounds["flaky"] < 4:
            return 0.0  # more to do: again at once
        woken.set()
        return None

    worker.add("quick", quick)
    worker.add("flaky", flaky)
    with pytest.raises(ValueError):
        worker.add("quick", quick)
    running = asyncio.ensure_future(worker.run_forever())
    try:

        async def quick_ran(times: int) -> bool:
            return rounds["quick"] >= times

        await until(lambda: quick_ran(1))
        assert rounds["quick"] == 1  # then it waits (the poll is a minute away)
        worker.wake("quick")
        await until(lambda: quick_ran(2))
        worker.wake("flaky")  # its failed first round waits for the poll, or a wake
        await asyncio.wait_for(woken.wait(), 5)
        assert rounds["flaky"] == 4 and rounds["quick"] == 2
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_stopping_the_worker_lets_a_transaction_finish_and_cancels_only_what_outlives_the_grace(
    tmp_path: Path,
) -> None:
    """A step cancelled inside a SQLite transaction loses its work, and where its connection cannot be closed
    (at event-loop teardown; aiosqlite < 0.22.1 cannot terminate one) leaves the write lock behind for the next
    server on the same file. Stopping waits for the step; only one that outlives the grace is cancelled."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'stop.db'}"
    first = Database(url)
    async with first.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE marks (step TEXT)")
    inside, release, stuck_cancelled = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def writer() -> float | None:
        async with first.begin() as conn:
            await conn.exec_driver_sql("INSERT INTO marks VALUES ('writer')")
            inside.set()
            await release.wait()
        return None

    async def stuck() -> float | None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stuck_cancelled.set()
            raise
        return None

    worker = Worker(poll_interval=60)
    worker.add("writer", writer)
    worker.add("stuck", stuck)
    worker.start()
    await asyncio.wait_for(inside.wait(), 5)
    asyncio.get_running_loop().call_later(0.2, release.set)
    started = time.monotonic()
    await worker.stop(grace=1.0)
    assert 0.9 <= time.monotonic() - started < 5  # waited out the grace for the stuck step, no longer
    assert stuck_cancelled.is_set()
    await first.close()
    second = Database(url)  # a restart: the lock is free and the writer's row was committed, once
    try:
        async with asyncio.timeout(5), second.begin() as conn:
            await conn.exec_driver_sql("INSERT INTO marks VALUES ('second')")
        async with second.read() as conn:
            rows = (await conn.exec_driver_sql("SELECT step FROM marks ORDER BY rowid")).all()
        assert [row[0] for row in rows] == ["writer", "second"]
    finally:
        await second.close()

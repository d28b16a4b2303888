"""The one runner of long-running operations, and the ``Worker`` that drives every background duty.

``Runner`` claims a stored operation under a lease, runs it with the executor registered for its kind and
records how it ended. A server runs an operation only while it holds its lease: the executor renews it as
it records results (``Lease.renew``: results and renewal in one transaction, so each result is recorded
once, by the lease holder), and a heartbeat renews it in between. Once a renewal fails (the operation was
cancelled, deleted or expired, or another server took it over after the lease lapsed) the executor is
stopped at once. An executor that raises leaves the lease to lapse: the operation runs again later, here or
elsewhere, keeping the results already recorded. A server claims only kinds it has an executor for.

``Worker`` runs duties (the runner, results files, webhook deliveries, sweeping), each in its own loop: run a
step, then wait until the step asks to run again, someone wakes the duty, or its interval passes. ``stop``
ends the loops between steps: a step cancelled inside a transaction can leave SQLite's write lock held by a
connection nobody closes (aiosqlite before 0.22.1 cannot be terminated), and a server started next on the
same file would find the database locked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from localgem import names

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: One round of a duty; returns how soon (seconds) it wants another, or None: at the next poll or wake.
Step = Callable[[], Awaitable[float | None]]


class Stored(Protocol):
    """An operation as its store returns it."""

    @property
    def project(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...


class OperationStore(Protocol):
    """Where operations of some kinds live, with their leases (``storage.batches`` for batches)."""

    async def claim(
        self, owner: str, now: datetime, until: datetime, kinds: Collection[str] | None = None
    ) -> Any | None: ...
    async def renew(self, owner: str, record: Any, now: datetime, until: datetime, results: Sequence[Any] = ()) -> bool:
        """Extends ``owner``'s lease to ``until`` and records ``results``, together; False if not its lease."""
        ...

    async def finish(self, owner: str, record: Any, state: str, now: datetime) -> bool: ...
    async def cancel(self, project: str, operation_id: str, now: datetime) -> bool: ...
    async def expire(self, created_before: datetime, now: datetime) -> int: ...


class Executor(Protocol):
    async def run(self, record: Any, lease: Lease) -> str | None:
        """Runs a claimed operation to its end; the state to record, or None if the lease was lost."""
        ...


class Lease:
    """One runner's hold on one operation while its executor runs it."""

    def __init__(self, store: OperationStore, owner: str, record: Stored, duration: timedelta, clock: Clock) -> None:
        self.owner = owner
        self.record = record
        self.lost = False
        self._store = store
        self._duration = duration
        self._clock = clock
        self._renewed = time.monotonic()

    async def renew(self, results: Sequence[Any] = ()) -> bool:
        """Records ``results`` and extends the lease, in one transaction; False once the lease is lost."""
        if self.lost:
            return False
        now = self._clock()
        if not await self._store.renew(self.owner, self.record, now, now + self._duration, results):
            self.lost = True
            return False
        self._renewed = time.monotonic()
        return True

    @property
    def idle(self) -> float:
        """Seconds since the lease was last renewed."""
        return time.monotonic() - self._renewed


@dataclass(frozen=True)
class _Kind:
    executor: Executor
    store: OperationStore


class Runner:
    def __init__(
        self,
        clock: Clock,
        *,
        lease: timedelta = timedelta(seconds=30),
        deadline: timedelta = timedelta(hours=48),
        heartbeat: float | None = None,
        owner: str | None = None,
    ) -> None:
        self.owner = owner or names.new_id(16)  # this process, as the holder of leases
        self._clock = clock
        self._lease = lease
        self._deadline = deadline  # an operation not ended this long after its creation expires
        self._heartbeat = heartbeat if heartbeat is not None else lease.total_seconds() / 3
        self._kinds: dict[str, _Kind] = {}
        self._ended: list[Callable[[], None]] = []
        self._added: list[Callable[[], None]] = []
        self._running: set[tuple[str, str, str]] = set()

    def register(self, kind: str, executor: Executor, store: OperationStore) -> None:
        """Operations of ``kind`` live in ``store`` and run with ``executor``."""
        if kind in self._kinds:
            raise ValueError(f"an executor for {kind!r} operations is registered already")
        self._kinds[kind] = _Kind(executor, store)

    def when_ended(self, callback: Callable[[], None]) -> None:
        """``callback`` is called after an operation ends here (finished, cancelled or expired)."""
        self._ended.append(callback)

    def when_added(self, callback: Callable[[], None]) -> None:
        """``callback`` is called when an operation is added (see ``added``): the runner's duty looks now."""
        self._added.append(callback)

    def added(self) -> None:
        """A new operation waits in a store: a runner takes it without waiting for its next poll."""
        for callback in self._added:
            callback()

    @property
    def running(self) -> frozenset[tuple[str, str, str]]:
        """(kind, project, id) of the operations this runner is running now."""
        return frozenset(self._running)

    async def step(self) -> float | None:
        """A ``Worker`` step: expire what is overdue, run one operation; again at once if it ran one."""
        await self.expire()
        return 0.0 if await self.run_once() else None

    async def expire(self) -> int:
        now = self._clock()
        expired = 0
        for store in self._stores():
            expired += await store.expire(now - self._deadline, now)
        if expired:
            self._notify_ended()
        return expired

    async def cancel(self, kind: str, project: str, operation_id: str) -> bool:
        """Ends a pending or running operation as cancelled; its runner, wherever it is, stops at its next
        renewal. False if it had ended already (or does not exist)."""
        if not await self._kinds[kind].store.cancel(project, operation_id, self._clock()):
            return False
        self._notify_ended()
        return True

    async def run_once(self) -> bool:
        """Claims one operation of a registered kind and runs it; False if none was waiting."""
        for store in self._stores():
            kinds = [kind for kind, known in self._kinds.items() if known.store is store]
            now = self._clock()
            record = await store.claim(self.owner, now, now + self._lease, kinds)
            if record is not None:
                await self._run(record, self._kinds[record.kind])
                return True
        return False

    async def _run(self, record: Stored, kind: _Kind) -> None:
        lease = Lease(kind.store, self.owner, record, self._lease, self._clock)
        key = (record.kind, record.project, record.id)
        self._running.add(key)
        work = asyncio.ensure_future(kind.executor.run(record, lease))
        beat = asyncio.ensure_future(self._keep_alive(lease, work))
        try:
            await asyncio.wait({work})
        finally:
            self._running.discard(key)
            beat.cancel()
            work.cancel()
            await asyncio.gather(beat, work, return_exceptions=True)
        state = None if work.cancelled() else work.result()  # an executor's exception propagates from here
        if state is None:
            log.info("%s operation %s/%s was cancelled, deleted or taken over; leaving it", *key)
            return
        if await kind.store.finish(self.owner, record, state, self._clock()):
            self._notify_ended()

    async def _keep_alive(self, lease: Lease, work: asyncio.Future) -> None:
        """The heartbeat: renews a lease its executor has not renewed lately; stops the executor once lost."""
        while not lease.lost:
            await asyncio.sleep(max(self._heartbeat - lease.idle, 0.0))
            if lease.idle >= self._heartbeat:
                try:
                    await lease.renew()
                except Exception:  # a database hiccup: the next beat (or the executor's own renewal) tries again
                    log.exception("renewing the lease of %s/%s failed", lease.record.project, lease.record.id)
                    await asyncio.sleep(self._heartbeat)
        work.cancel()

    def _stores(self) -> list[OperationStore]:
        stores: list[OperationStore] = []
        for kind in self._kinds.values():
            if all(kind.store is not known for known in stores):
                stores.append(kind.store)
        return stores

    def _notify_ended(self) -> None:
        for callback in self._ended:
            callback()


@dataclass
class _Duty:
    name: str
    step: Step
    every: float | None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Worker:
    """Background duties, each in its own loop (one never waits behind another's long step)."""

    def __init__(self, poll_interval: float) -> None:
        self._poll = poll_interval
        self._duties: dict[str, _Duty] = {}
        self._stopping = False
        self._running: asyncio.Task | None = None

    def add(self, name: str, step: Step, every: float | None = None) -> None:
        """``every``: this duty's own interval (seconds) instead of the poll interval."""
        if name in self._duties:
            raise ValueError(f"a duty named {name!r} exists already")
        self._duties[name] = _Duty(name, step, every)

    def wake(self, name: str) -> None:
        """``name`` runs its next step now rather than at its next poll."""
        self._duties[name].wake.set()

    def start(self) -> None:
        self._running = asyncio.ensure_future(self.run_forever())

    async def stop(self, grace: float) -> None:
        """Ends every loop once its step is done; steps still running after ``grace`` seconds are cancelled."""
        self._stopping = True
        for duty in self._duties.values():
            duty.wake.set()
        if self._running is None:
            return
        await asyncio.wait({self._running}, timeout=grace)
        self._running.cancel()
        await asyncio.gather(self._running, return_exceptions=True)

    async def run_forever(self) -> None:
        loops = [asyncio.ensure_future(self._loop(duty)) for duty in self._duties.values()]
        try:
            await asyncio.gather(*loops)
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _loop(self, duty: _Duty) -> None:
        interval = self._poll if duty.every is None else duty.every
        while not self._stopping:
            duty.wake.clear()  # a wake during the step brings the next one forward
            try:
                delay = await duty.step()
            except Exception:  # a failed round (a database hiccup, a lease left to lapse) is retried later
                log.exception("background duty %r failed", duty.name)
                delay = None
            wait = interval if delay is None else min(max(delay, 0.0), interval)
            if self._stopping:
                return
            if wait == 0:
                await asyncio.sleep(0)  # let the other duties and requests in
                continue
            try:
                await asyncio.wait_for(duty.wake.wait(), wait)
            except TimeoutError:
                pass

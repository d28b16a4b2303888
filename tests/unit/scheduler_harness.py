"""Driving the llama scheduler in unit tests: schedulers over ``FakeDecoder``s, requests, their events, and
a log of the order in which the scheduler emitted the events of several jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from localgem.engines.base import (
    CandidateFinished,
    DeadlineReached,
    EngineEvent,
    EngineStats,
    GenerationRequest,
    SamplingParams,
    TextDelta,
)
from localgem.engines.llama.prefixes import PrefixStore
from localgem.engines.llama.scheduler import Job, Scheduler
from tests.unit.fake_decoder import FakeDecoder

CHUNK = 16
A = list(range(100, 140))  # 40 tokens: cut at 16, 32, 39; its slot keeps A[:39]
B = list(range(200, 220))  # 20 tokens: one chunk, 0..19
C = list(range(300, 335))  # 35 tokens: cut at 16, 34 (a 2-token tail joins the chunk before)
OTHER = [1] * 15
GREEDY = SamplingParams(temperature=0)

Build = Callable[..., tuple[Scheduler, FakeDecoder]]
Log = list[tuple[str, EngineEvent]]


@contextmanager
def schedulers() -> Iterator[Build]:
    """Makes schedulers over fake decoders, and closes them (letting go of any held decode call) after."""
    made: list[tuple[Scheduler, FakeDecoder]] = []

    def make(
        slots: int = 1,
        *,
        max_queue: int = 8,
        prefixes: PrefixStore | None = None,
        reuse: bool = True,
        capacity: int | None = None,
        window: int = 0,
        ring: int = 0,
        call: int = CHUNK,
        alone: int | None = None,
        context_length: int = 1 << 30,
        min_prompt_rows: int = 0,
        one_pass_cells: int = 0,
        split_from: int = 0,
    ) -> tuple[Scheduler, FakeDecoder]:
        decoder = FakeDecoder(
            slots,
            context_length,
            min_prompt_rows,
            one_pass_cells,
            split_from,
            capacity=capacity,
            window=window,
            ring=ring,
        )
        stats = EngineStats()
        scheduler = Scheduler(
            decoder,
            max_queue=max_queue,
            prefill_chunk=CHUNK,
            stats=stats,
            prefixes=prefixes,
            reuse_prefixes=reuse,
            prefill_call=call,
            prefill_call_alone=call if alone is None else alone,
        )
        made.append((scheduler, decoder))
        return scheduler, decoder

    yield make
    for scheduler, decoder in made:
        decoder.release()
        scheduler.close()


def request(prompt: list[int], max_tokens: int = 8, sampling: SamplingParams = GREEDY, **options) -> GenerationRequest:
    return GenerationRequest(list(prompt), sampling, max_tokens, **options)


def submit(scheduler: Scheduler, generation: GenerationRequest) -> Job:
    job = Job(generation, asyncio.get_running_loop())
    scheduler.submit(job)
    return job


@dataclass(eq=False)
class LoggedJob(Job):
    """A job that also logs its events, as the scheduler thread emits them, in a log several jobs share:
    their order there is the order in which the scheduler made them."""

    name: str = ""
    log: Log = field(default_factory=list)

    def emit(self, event: EngineEvent) -> None:
        self.log.append((self.name, event))
        super().emit(event)


def start(scheduler: Scheduler, generation: GenerationRequest, name: str, log: Log) -> asyncio.Task[list[EngineEvent]]:
    """Submits a logged job; the task collects its events."""
    job = LoggedJob(generation, asyncio.get_running_loop(), name=name, log=log)
    scheduler.submit(job)
    return asyncio.create_task(events_of(job))


async def events_of(job: Job) -> list[EngineEvent]:
    """What ``LlamaCppEngine.generate`` yields for the job (and raises what failed it)."""
    events: list[EngineEvent] = []
    remaining = job.request.candidates
    async with asyncio.timeout(5):
        while remaining:
            batch = await job.events.get()
            if isinstance(batch, BaseException):
                raise batch
            for event in batch:
                events.append(event)
                if isinstance(event, CandidateFinished):
                    remaining -= 1
                elif isinstance(event, DeadlineReached):
                    remaining = 0
    return events


def text(events: list[EngineEvent], index: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta) and e.index == index)


def at(log: Log, name: str, kind: type, last: bool = False) -> int:
    """Where in the log the job's first (or last) event of that kind came."""
    found = [i for i, (who, event) in enumerate(log) if who == name and isinstance(event, kind)]
    assert found, f"{name} had no {kind.__name__}: {log}"
    return found[-1] if last else found[0]


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.001)

"""The llama scheduler's admission, driven by a fake decoder (see ``test_scheduler_logic``): online requests
before batch work, batch sequences sitting out an online request's first steps, batch work swapped out
for online requests and resumed unchanged, batch work that cannot be swapped out, the slot batch work
leaves free, a full queue."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from localgem import errors
from localgem.engines.base import Admitted, CandidateFinished, TextDelta
from localgem.engines.llama.admission import candidate_slots
from localgem.engines.llama.jobs import Slot
from tests.unit.fake_decoder import continuation
from tests.unit.scheduler_harness import (
    A,
    B,
    Build,
    C,
    Log,
    at,
    events_of,
    request,
    schedulers,
    start,
    submit,
    text,
)


@pytest.fixture
def build() -> Iterator[Build]:
    with schedulers() as make:
        yield make


# -- admission and priority ---------------------------------------------------------------------------


async def test_an_online_request_goes_first_and_batch_sequences_sit_out_its_first_steps(build: Build) -> None:
    scheduler, decoder = build(2)
    decoder.hold(steps=3)
    batch = submit(scheduler, request(A, 60, background=True))
    batch_events = asyncio.create_task(events_of(batch))
    decoder.wait_held()  # in the batch request's fourth decode step
    online = submit(scheduler, request(B, 5))
    decoder.release()
    assert text(await events_of(online)) == continuation(B, 5)
    assert text(await batch_events) == continuation(A, 60)
    rows = decoder.step_rows()
    assert rows[:4] == [[0]] * 4 and rows[4:7] == [[1], [1], [0, 1]]
    assert scheduler.stats.swapped_out == 0  # a slot was free


async def test_an_online_request_swaps_out_batch_work_which_resumes_unchanged_before_queued_batch(build: Build) -> None:
    scheduler, decoder = build(1)
    log: Log = []
    decoder.hold(steps=3)
    tasks = {"first": start(scheduler, request(A, 30, background=True), "first", log)}
    decoder.wait_held()  # the batch request has three tokens
    for i in (1, 2):
        tasks[f"batch {i}"] = start(scheduler, request([i, *B], 4, background=True), f"batch {i}", log)
    tasks["online"] = start(scheduler, request(C, 4), "online", log)
    decoder.release()
    results = {name: await task for name, task in tasks.items()}

    assert at(log, "first", TextDelta) < at(log, "online", Admitted)
    assert at(log, "online", CandidateFinished) < at(log, "first", CandidateFinished)
    assert at(log, "first", CandidateFinished) < at(log, "batch 1", Admitted)
    assert at(log, "batch 1", CandidateFinished) < at(log, "batch 2", Admitted)
    assert text(results["first"]) == continuation(A, 30)
    assert text(results["online"]) == continuation(C, 4)
    assert [text(results[f"batch {i}"]) for i in (1, 2)] == [continuation([i, *B], 4) for i in (1, 2)]
    assert scheduler.stats.swapped_out == 1 and scheduler.stats.requests_finished == 4


async def test_an_online_arrival_stops_the_reading_of_a_batch_prompt(build: Build) -> None:
    scheduler, decoder = build(2)
    decoder.hold()
    batch = submit(scheduler, request(A * 5, 3, background=True))  # 199 tokens to read: one turn's budget
    decoder.wait_held()  # in its first chunk
    online = submit(scheduler, request(B, 3))
    decoder.release()
    results = await asyncio.gather(events_of(batch), events_of(online))
    assert [text(events) for events in results] == [continuation(A * 5, 3), continuation(B, 3)]
    starts = [(batch[0].sequence, batch[0].position) for batch in decoder.batches]
    # The batch prompt's second chunk waits until the online request has its first two tokens (and the
    # turn's decode step gave it its third).
    assert starts[:6] == [(0, 0), (1, 0), (1, 19), (1, 20), (1, 21), (0, 16)]


async def test_the_batch_request_that_did_least_is_swapped_out(build: Build) -> None:
    scheduler, decoder = build(2)
    decoder.hold()
    ahead = submit(scheduler, request(A, 30, background=True))  # slot 0
    decoder.wait_held()
    behind = submit(scheduler, request(B, 30, background=True))  # slot 1, a shorter prompt, a turn later
    decoder.release(steps=4)
    decoder.wait_held()
    online = submit(scheduler, request(C, 3))
    decoder.release()
    results = await asyncio.gather(events_of(ahead), events_of(behind), events_of(online))
    assert decoder.saved == [1] and scheduler.stats.swapped_out == 1
    assert [text(events) for events in results] == [continuation(A, 30), continuation(B, 30), continuation(C, 3)]


async def test_an_online_request_waits_for_batch_work_it_cannot_swap_out(build: Build) -> None:
    scheduler, decoder = build(2)
    log: Log = []
    decoder.hold(steps=2)
    batch = start(scheduler, request(A, 20, candidates=2, background=True), "batch", log)
    decoder.wait_held()
    online = start(scheduler, request(B, 3), "online", log)
    decoder.release()
    await asyncio.gather(batch, online)
    assert at(log, "batch", CandidateFinished, last=True) < at(log, "online", Admitted)
    assert scheduler.stats.swapped_out == 0


async def test_batch_work_leaves_a_slot_free_while_online_requests_came_recently(build: Build) -> None:
    scheduler, decoder = build(2)
    decoder.hold()
    first = submit(scheduler, request(A, 30, background=True))
    decoder.wait_held()
    second = submit(scheduler, request(B, 30, background=True))
    decoder.release()
    await asyncio.gather(events_of(first), events_of(second))
    assert [0, 1] in decoder.step_rows()  # no online request yet: batch work takes every slot

    await events_of(submit(scheduler, request(C, 2)))
    steps = len(decoder.step_rows())
    log: Log = []
    decoder.hold()
    tasks = [start(scheduler, request(A, 30, background=True), "third", log)]
    decoder.wait_held()
    tasks.append(start(scheduler, request(B, 30, background=True), "fourth", log))
    decoder.release()
    results = await asyncio.gather(*tasks)
    assert all(len(row) == 1 for row in decoder.step_rows()[steps:])
    assert at(log, "third", CandidateFinished) < at(log, "fourth", Admitted)
    assert [text(events) for events in results] == [continuation(A, 30), continuation(B, 30)]


async def test_a_full_queue_rejects_at_once_and_batch_work_queued_does_not_count_against_online(
    build: Build,
) -> None:
    scheduler, decoder = build(1, max_queue=1)
    decoder.hold()
    running = submit(scheduler, request(A, 3))
    decoder.wait_held()
    with pytest.raises(errors.InvalidArgument, match="parallel slots"):
        submit(scheduler, request(B, 3, candidates=2))
    batch = submit(scheduler, request(B, 3, background=True))
    online = submit(scheduler, request(C, 3))  # the queue holds only batch work: an online request still fits
    with pytest.raises(errors.Unavailable, match="overloaded"):
        submit(scheduler, request(C, 3))
    with pytest.raises(errors.Unavailable, match="overloaded"):
        submit(scheduler, request(C, 3, background=True))
    assert scheduler.stats.requests_rejected == 2 and scheduler.stats.queued_requests == 2
    decoder.release()
    results = await asyncio.gather(events_of(running), events_of(batch), events_of(online))
    assert [text(events) for events in results] == [continuation(A, 3), continuation(B, 3), continuation(C, 3)]
    assert scheduler.stats.queued_requests == 0 and scheduler.stats.requests_finished == 3


def test_candidates_take_the_free_neighbours_of_the_first_slot() -> None:
    slots = [Slot(i, cached=[1] * (i + 1), last_used=10.0 - i) for i in range(6)]
    ids = lambda chosen: [slot.seq_id for slot in chosen]  # noqa: E731
    assert ids(candidate_slots(slots[2], slots, 3)) == [3, 4, 5]
    assert ids(candidate_slots(slots[4], slots, 3)) == [5, 3, 2]  # right, then left, of the run
    free = [slots[i] for i in (0, 2, 3, 5)]
    # 2..3 is the longest run around 3; then the free slot whose cache matters least (5: used longest ago).
    assert ids(candidate_slots(slots[3], free, 3)) == [2, 5, 0]
    assert candidate_slots(slots[3], free, 0) == []

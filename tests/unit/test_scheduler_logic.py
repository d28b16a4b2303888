"""The llama scheduler driven by a fake decoder (no model, milliseconds a test): how prompts are cut and
reused, candidates, requests that stop early (client gone, deadline), failures, kept prefixes, closing.

The fake's next token hashes every cell of its sequence, and it refuses rows at positions that do not
continue a sequence: an output equal to ``continuation(prompt, n)`` shows that the scheduler kept the
sequence's cells exactly right, whatever it reused, copied, swapped or restored. ``FakeDecoder.hold``
stops the scheduler thread inside a decode call, so that requests can be submitted at a known turn.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from localgem import errors
from localgem.engines.base import (
    Admitted,
    CandidateFinished,
    DeadlineReached,
    EngineEvent,
    FinishReason,
    SamplingParams,
    TextDelta,
)
from localgem.engines.llama.prefixes import PrefixStore
from tests.unit.fake_decoder import ALPHABET, continuation
from tests.unit.scheduler_harness import (
    OTHER,
    A,
    B,
    Build,
    C,
    events_of,
    request,
    schedulers,
    submit,
    text,
    until,
)


@pytest.fixture
def build() -> Iterator[Build]:
    with schedulers() as make:
        yield make


# -- chunking and prefix reuse ------------------------------------------------------------------------


async def test_a_prompt_is_cut_in_aligned_chunks_and_its_last_token_decoded_in_a_step(build: Build) -> None:
    scheduler, decoder = build()
    events = await events_of(submit(scheduler, request(A, 5)))
    assert events[0] == Admitted(0) and events[-1] == CandidateFinished(0, FinishReason.MAX_TOKENS, 5)
    assert text(events) == continuation(A, 5)
    assert decoder.prompt_chunks(0) == [(0, 16), (16, 32), (32, 39)]
    assert [batch[0].position for batch in decoder.batches if batch[0].logits] == [39, 40, 41, 42, 43]
    stats = scheduler.stats
    assert (stats.prompt_tokens_evaluated, stats.tokens_generated, stats.decode_steps) == (39, 5, 5)
    assert (stats.requests_started, stats.requests_finished, stats.active_sequences) == (1, 1, 0)
    assert decoder.samplers[0].released


async def test_a_follow_up_takes_the_slot_holding_its_start_and_reuses_it_to_a_chunk_boundary(build: Build) -> None:
    scheduler, decoder = build(2)
    await events_of(submit(scheduler, request(A, 3)))  # slot 0
    await events_of(submit(scheduler, request(B, 3)))  # shares nothing with slot 0: the empty slot 1
    follow = A[:35] + OTHER
    events = await events_of(submit(scheduler, request(follow, 4)))
    assert events[0] == Admitted(32) and text(events) == continuation(follow, 4)
    # It went on where a cold start of it would have cut: 32..49.
    assert decoder.prompt_chunks(0) == [(0, 16), (16, 32), (32, 39), (32, 49)]
    assert decoder.prompt_chunks(1) == [(0, 19)]

    await events_of(submit(scheduler, request(C, 2)))  # into slot 1, used longest ago; it keeps C[:34]
    longer = C[:34] + OTHER
    events = await events_of(submit(scheduler, request(longer, 3)))
    # 34 tokens are shared, but C's cut has no chunk ending at 32 (its chunk ran 16..34): 16 are reused.
    assert events[0] == Admitted(16) and text(events) == continuation(longer, 3)
    assert decoder.prompt_chunks(1)[-3:] == [(16, 34), (16, 32), (32, 48)]
    assert scheduler.stats.prompt_tokens_reused == 32 + 16


async def test_a_prompt_call_takes_neighbouring_chunks_and_keeps_their_boundaries(build: Build) -> None:
    scheduler, decoder = build(2, call=32)
    await events_of(submit(scheduler, request(A, 3)))  # slot 0: 0..16 and 16..32 in one call, then 32..39
    assert decoder.prompt_chunks(0) == [(0, 32), (32, 39)]
    longer = A * 3  # 120 tokens, of which slot 0 holds the first 39: reused up to the boundary at 32
    events = await events_of(submit(scheduler, request(longer, 2)))
    assert events[0] == Admitted(32) and text(events) == continuation(longer, 2)
    assert decoder.prompt_chunks(0)[2:] == [(32, 64), (64, 96), (96, 119)]  # 96..112 and 112..119


async def test_a_short_prompt_call_near_the_end_of_the_context_starts_earlier(build: Build) -> None:
    """Where prompt calls are padded to 64 rows and the filler would not fit before the context's end (114 cells),
    the call starts 64 rows before its end instead, computing again cells the slot holds."""
    scheduler, decoder = build(1, call=64, context_length=114, min_prompt_rows=64)
    first = list(range(400, 500))  # cut at 64 (a call of 64 rows), then 64..99: 35 rows, 64 + 64 cells > 114
    events = await events_of(submit(scheduler, request(first, 2)))
    assert text(events) == continuation(first, 2)
    longer = first + OTHER[:10]  # reused to 80 (the chunk boundary both cuts have), then 80..109
    events = await events_of(submit(scheduler, request(longer, 2)))
    assert events[0] == Admitted(80) and text(events) == continuation(longer, 2)
    assert decoder.prompt_chunks(0) == [(0, 64), (35, 99), (45, 109)]


async def test_where_short_prompts_are_read_in_one_pass_longer_ones_never_end_a_call_within_them(
    build: Build,
) -> None:
    """A decoder that reads prompt calls ending within 56 cells in one pass (``one_pass_cells``): a prompt that short
    is one call, a longer one's first call goes past 56 whatever the call size, and neither kind starts from the
    other's cells."""
    scheduler, decoder = build(2, call=16, one_pass_cells=56, min_prompt_rows=64)
    await events_of(submit(scheduler, request(A, 2)))  # slot 0: 39 prompt rows
    assert decoder.prompt_chunks(0) == [(0, 39)]
    longer = A * 3  # 119 prompt rows; slot 0 holds the first 39 of them, read in one pass
    events = await events_of(submit(scheduler, request(longer, 2)))
    assert events[0] == Admitted(0) and text(events) == continuation(longer, 2)
    assert decoder.prompt_chunks(1) == [(0, 64), (64, 80), (80, 96), (96, 112), (112, 119)]
    again = await events_of(submit(scheduler, request(A[:30] + OTHER[:8], 2)))  # short: slot 0's cells, not 1's
    assert again[0] == Admitted(16) and decoder.prompt_chunks(0)[-1] == (16, 37)


async def test_a_prompt_read_while_no_stream_waits_for_a_step_takes_larger_calls(build: Build) -> None:
    scheduler, decoder = build(2, call=32, alone=64)
    await events_of(submit(scheduler, request(A * 3, 2)))
    assert decoder.prompt_chunks(0) == [(0, 64), (64, 119)]
    # While a stream decodes, calls hold 32 tokens at most.
    decoder.hold(steps=len(decoder.step_rows()) + 3)
    running = submit(scheduler, request(B, 40))  # into slot 1
    await asyncio.to_thread(decoder.wait_held)  # in its fourth decode step
    waiting = submit(scheduler, request(C * 3, 2))  # into slot 0
    decoder.release()
    await events_of(waiting)
    await events_of(running)
    assert decoder.prompt_chunks(0)[2:] == [(0, 32), (32, 64), (64, 96), (96, 104)]


async def test_cells_decoded_token_by_token_are_not_reused_as_prompt(build: Build) -> None:
    scheduler, decoder = build()
    first = await events_of(submit(scheduler, request(A, 20)))
    turn = A + [ALPHABET.index(char) for char in text(first)] + OTHER  # the next turn of a chat
    assert decoder.cells[0] == A[:39]  # of the 58 cells it decoded, the slot keeps those of the prompt
    events = await events_of(submit(scheduler, request(turn, 2)))
    assert events[0] == Admitted(32) and text(events) == continuation(turn, 2)


async def test_without_reuse_every_prompt_is_computed_whole(build: Build) -> None:
    scheduler, decoder = build(reuse=False)
    await events_of(submit(scheduler, request(A, 2)))
    events = await events_of(submit(scheduler, request(A, 2)))
    assert events[0] == Admitted(0) and text(events) == continuation(A, 2)
    assert scheduler.stats.prompt_tokens_evaluated == 2 * 39


async def test_candidates_start_from_a_copy_of_the_first_candidates_prompt_cells(build: Build) -> None:
    scheduler, decoder = build(2)
    sampling = SamplingParams(temperature=0.7, seed=5)
    events = await events_of(submit(scheduler, request(A, 6, sampling, candidates=2)))
    assert text(events, 0) == text(events, 1) == continuation(A, 6)
    assert scheduler.stats.prompt_tokens_evaluated == 39  # computed once
    assert decoder.prompt_chunks(1) == [] and decoder.step_rows()[0] == [0, 1]
    assert [sampler.seed for sampler in decoder.samplers] == [5, 6]
    assert {e for e in events if isinstance(e, CandidateFinished)} == {
        CandidateFinished(0, FinishReason.MAX_TOKENS, 6),
        CandidateFinished(1, FinishReason.MAX_TOKENS, 6),
    }
    await events_of(submit(scheduler, request(B, 2)))  # slot 1 holds B
    events = await events_of(submit(scheduler, request(A, 4, candidates=2)))
    # The first candidate reuses all of slot 0's cells (the same prompt); the second starts from a copy of them.
    assert events[0] == Admitted(39) and text(events, 0) == text(events, 1) == continuation(A, 4)


async def test_prompts_that_arrive_together_compute_their_shared_start_once(build: Build) -> None:
    scheduler, decoder = build(4)
    decoder.hold()
    busy = submit(scheduler, request(B, 2))  # slot 0
    decoder.wait_held()  # inside B's prompt: the three below are admitted together at the next turn
    prompts = [A[:35] + OTHER, A[:35] + [2] * 15, A]
    jobs = [submit(scheduler, request(prompt, 4)) for prompt in prompts]
    decoder.release()
    await events_of(busy)
    results = [await events_of(job) for job in jobs]
    assert [text(events) for events in results] == [continuation(prompt, 4) for prompt in prompts]
    # The first computes its prompt; the others wait for its first 32 cells (the chunk boundary both cuts share),
    # start from a copy of them, and compute only the rest.
    assert decoder.prompt_chunks(1) == [(0, 16), (16, 32), (32, 49)]
    assert decoder.prompt_chunks(2) == [(32, 49)] and decoder.prompt_chunks(3) == [(32, 39)]
    assert decoder.copies == [(1, 2), (1, 3)]
    assert [events[0] for events in results] == [Admitted(0)] * 3
    assert [e for e in results[1] if isinstance(e, Admitted)] == [Admitted(0), Admitted(32)]
    stats = scheduler.stats
    assert stats.prompt_tokens_evaluated == 19 + 49 + 17 + 7
    assert (stats.prompt_tokens_reused, stats.prompts_copied) == (64, 2)


async def test_a_prompt_whose_copy_fails_computes_its_start_itself(build: Build) -> None:
    scheduler, decoder = build(2)
    decoder.fail_loads = True
    decoder.hold()
    first = submit(scheduler, request(A, 2))
    decoder.wait_held()  # in A's first chunk: A[:35] + OTHER waits for its 32 cells
    second = submit(scheduler, request(A[:35] + OTHER, 3))
    decoder.release()
    await events_of(first)
    events = await events_of(second)
    assert text(events) == continuation(A[:35] + OTHER, 3) and [e for e in events if isinstance(e, Admitted)] == [
        Admitted(0)
    ]
    assert decoder.copies == [(0, 1)] and decoder.prompt_chunks(1) == [(0, 16), (16, 32), (32, 49)]
    assert scheduler.stats.prompts_copied == 0


async def test_a_free_slot_keeps_its_long_prompt_and_lends_a_copy_of_its_start(build: Build) -> None:
    scheduler, decoder = build(2)
    long = A + list(range(500, 560))  # 100 tokens: slot 0 keeps 99
    await events_of(submit(scheduler, request(long, 1)))
    follow = A[:35] + OTHER  # shares 35 of slot 0's 99 cells: too few to take the slot (and lose the rest)
    events = await events_of(submit(scheduler, request(follow, 3)))
    assert text(events) == continuation(follow, 3) and Admitted(32) in events
    assert decoder.copies == [(0, 1)] and decoder.prompt_chunks(1) == [(32, 49)]
    assert decoder.cells[0] == long[:99]
    again = await events_of(submit(scheduler, request(long, 2)))
    assert again[0] == Admitted(99) and text(again) == continuation(long, 2)


async def test_running_sequences_decode_together_in_slot_order(build: Build) -> None:
    scheduler, decoder = build(3)
    decoder.hold()
    jobs = [submit(scheduler, request(A, 12))]
    decoder.wait_held()  # A's first chunk: the others join at the next turn
    jobs += [submit(scheduler, request(B, 7)), submit(scheduler, request(C, 20))]
    decoder.release()
    results = await asyncio.gather(*(events_of(job) for job in jobs))
    assert [text(events) for events in results] == [continuation(A, 12), continuation(B, 7), continuation(C, 20)]
    rows = decoder.step_rows()
    assert [0, 1, 2] in rows and all(row == sorted(row) for row in rows)


# -- requests that stop early -------------------------------------------------------------------------


async def test_a_request_whose_client_leaves_frees_its_slot_keeping_its_prompt(build: Build) -> None:
    scheduler, decoder = build(1)
    job = submit(scheduler, request(A, 10**6))
    seen: list[EngineEvent] = []
    while not any(isinstance(event, TextDelta) for event in seen):
        batch = await asyncio.wait_for(job.events.get(), 5)
        assert isinstance(batch, list)
        seen += batch
    job.cancelled.set()  # as the engine does when its consumer closes the stream
    scheduler.wake()
    stats = scheduler.stats
    await until(lambda: stats.requests_aborted == 1 and stats.active_sequences == 0)
    assert decoder.samplers[0].released
    again = await events_of(submit(scheduler, request(A, 3)))
    assert again[0] == Admitted(39) and text(again) == continuation(A, 3)
    while not job.events.empty():  # what it sent after the client left
        batch = job.events.get_nowait()
        assert isinstance(batch, list)
        seen += batch
    assert not any(isinstance(event, CandidateFinished | DeadlineReached) for event in seen)
    assert stats.requests_finished == 1


async def test_a_queued_request_whose_client_leaves_never_starts(build: Build) -> None:
    scheduler, decoder = build(1)
    decoder.hold()
    running = submit(scheduler, request(A, 3))
    decoder.wait_held()
    queued = submit(scheduler, request(B, 3))
    queued.cancelled.set()
    decoder.release()
    await events_of(running)
    stats = scheduler.stats
    await until(lambda: stats.requests_aborted == 1)
    assert stats.queued_requests == 0 and stats.requests_started == 1 and queued.events.empty()


async def test_a_deadline_ends_a_running_request_with_deadline_reached(build: Build) -> None:
    scheduler, decoder = build(1)
    deadline = time.monotonic() + 0.2
    decoder.hold(steps=2)
    job = submit(scheduler, request(A, 10**6, deadline=deadline))
    decoder.wait_held()  # running, two tokens in
    await until(lambda: time.monotonic() > deadline)
    decoder.release()
    events = await events_of(job)
    assert events[0] == Admitted(0) and events[-1] == DeadlineReached()
    assert not any(isinstance(event, CandidateFinished) for event in events)
    output = text(events)
    assert output and output == continuation(A, len(output))  # one character a token
    stats = scheduler.stats
    assert stats.requests_aborted == 1 and stats.active_sequences == 0 and decoder.samplers[0].released


async def test_a_request_past_its_deadline_in_the_queue_never_starts(build: Build) -> None:
    scheduler, decoder = build(1)
    events = await events_of(submit(scheduler, request(A, 3, deadline=time.monotonic() - 1)))
    assert events == [DeadlineReached()]
    assert scheduler.stats.requests_started == 0 and scheduler.stats.requests_aborted == 1 and not decoder.batches


# -- failures and kept prefixes -----------------------------------------------------------------------


async def test_a_full_kv_cache_fails_the_running_requests_and_the_loop_serves_on(build: Build) -> None:
    scheduler, decoder = build(1, capacity=36)
    with pytest.raises(errors.ResourceExhausted):
        await events_of(submit(scheduler, request(A, 3)))  # its third chunk does not fit
    await until(lambda: not any(decoder.cells.values()))  # every sequence's cells are dropped
    events = await events_of(submit(scheduler, request(A[:24], 3)))
    assert events[0] == Admitted(0)  # the failed request's cells are gone, and its slot knows it
    assert text(events) == continuation(A[:24], 3)


async def test_a_swapped_out_request_that_cannot_be_loaded_back_fails(build: Build) -> None:
    scheduler, decoder = build(1)
    decoder.hold(steps=2)
    batch = asyncio.create_task(events_of(submit(scheduler, request(A, 50, background=True))))
    decoder.wait_held()
    decoder.fail_loads = True
    online = submit(scheduler, request(B, 3))
    decoder.release()
    assert text(await events_of(online)) == continuation(B, 3)
    with pytest.raises(errors.Unavailable, match="paused for online traffic"):
        await batch
    assert scheduler.stats.swapped_out == 1


async def test_a_kept_prefix_is_restored_into_a_slot_and_computed_when_it_does_not_load(build: Build) -> None:
    store = PrefixStore(None, ram_bytes=1 << 30, disk_bytes=0)
    scheduler, decoder = build(1, prefixes=store)
    await events_of(submit(scheduler, request(A, 1, keep_as="k")))
    kept = store.get("k")
    assert kept is not None and kept.tokens == tuple(A[:39])
    await events_of(submit(scheduler, request(B, 2)))  # the slot holds another prompt now
    follow = A[:35] + OTHER
    events = await events_of(submit(scheduler, request(follow, 3, prefix_key="k")))
    assert events[0] == Admitted(32) and text(events) == continuation(follow, 3)
    assert scheduler.stats.prefixes_restored == 1

    await events_of(submit(scheduler, request(B, 2)))
    decoder.fail_loads = True
    events = await events_of(submit(scheduler, request(follow, 3, prefix_key="k")))
    assert events[0] == Admitted(0) and text(events) == continuation(follow, 3)
    assert scheduler.stats.prefixes_restored == 1


async def test_a_windowed_cache_is_reused_only_where_it_still_holds_the_window(build: Build) -> None:
    # As Gemma 3's sliding-window layers with sliding_window_full off: they attend 8 positions back and keep
    # only a sequence's last ``ring`` cells. Going on at 32 needs the cells from 24 on.
    follow = A[:35] + OTHER
    for ring, reused in ((48, 32), (20, 32), (16, 0)):
        scheduler, decoder = build(window=8, ring=ring)
        await events_of(submit(scheduler, request(A, 5)))  # 44 cells: the first 44 - ring are overwritten
        events = await events_of(submit(scheduler, request(follow, 3)))
        assert events[0] == Admitted(reused) and text(events) == continuation(follow, 3), ring

    for ring, restored in ((16, 1), (12, 0)):  # a kept prefix holds its last ``ring`` cells
        store = PrefixStore(None, ram_bytes=1 << 30, disk_bytes=0)
        scheduler, decoder = build(prefixes=store, window=8, ring=ring)
        await events_of(submit(scheduler, request(A, 1, keep_as="k")))
        await events_of(submit(scheduler, request(B, 2)))
        events = await events_of(submit(scheduler, request(follow, 3, prefix_key="k")))
        assert events[0] == Admitted(32 if restored else 0) and text(events) == continuation(follow, 3), ring
        assert scheduler.stats.prefixes_restored == restored


async def test_closing_fails_running_and_queued_requests(build: Build) -> None:
    scheduler, decoder = build(1)
    decoder.hold()
    running = submit(scheduler, request(A, 10**6))
    decoder.wait_held()
    queued = submit(scheduler, request(B, 3))
    closing = asyncio.create_task(asyncio.to_thread(scheduler.close))
    decoder.release()  # the endless request runs on until the loop sees it is closing
    await closing
    for job in (running, queued):
        with pytest.raises(errors.Unavailable, match="shutting down"):
            await events_of(job)
    assert not scheduler.healthy(time.monotonic())


def test_the_scheduler_needs_no_model_bindings() -> None:
    code = (
        "import sys, localgem.engines.llama.scheduler\n"
        "loaded = [m for m in ('llama_cpp', 'localgem.engines.llama.native') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

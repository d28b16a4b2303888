"""The llama scheduler's pure rules: how prompts are cut into chunks, how much of a cached prompt a new
one starts from, which free slot it takes; and how a job's outbox batches its events."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from localgem.engines.base import (
    Admitted,
    CandidateFinished,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    TextDelta,
)
from localgem.engines.llama.jobs import FLUSH_INTERVAL, Job, Slot
from localgem.engines.llama.prefix_reuse import MIN_CHUNK, best_slot, boundary, chunk_end, common_prefix, reusable

CHUNK = 16
P = list(range(100, 140))  # a 40-token prompt; its slot keeps P[:39] (its last token is decoded, not prefilled)
OTHER = [1] * 30


def cut(start: int, end: int, chunk: int = CHUNK) -> list[int]:
    """Where the chunks of a prompt cut up to ``end`` end, from ``start`` on."""
    stops = []
    while start < end:
        start = chunk_end(start, end, chunk)
        stops.append(start)
    return stops


@pytest.mark.parametrize(
    ("start", "end", "stop"),
    [(0, 39, 16), (16, 39, 32), (32, 39, 39), (0, 34, 16), (16, 34, 34), (0, 3, 3), (0, 19, 19), (0, 20, 16)],
)
def test_chunks_end_at_multiples_of_the_chunk_size_and_a_short_tail_joins_the_chunk_before(start, end, stop) -> None:
    assert chunk_end(start, end, CHUNK) == stop


@pytest.mark.parametrize("chunk", [MIN_CHUNK, 5, 16])
def test_a_prompt_resumed_at_a_boundary_is_cut_as_a_cold_start_cuts_it(chunk: int) -> None:
    for end in range(1, 100):
        cold = cut(0, end, chunk)
        assert all(b - a >= min(MIN_CHUNK, end) for a, b in zip([0, *cold], cold, strict=False))
        for n in range(0, end, chunk):
            if boundary(n, end, chunk):
                assert cut(n, end, chunk) == [stop for stop in cold if stop > n], (end, n)


@pytest.mark.parametrize(
    ("cached", "prompt", "expected"),
    [
        (P[:39], P[:35] + OTHER, 32),  # shares 35: the last chunk boundary below
        (P[:39], P, 39),  # the same prompt again: all of its cells, cut as cold (only its last token is decoded)
        (P[:35], P[:36], 35),  # the same, its last chunk longer than a chunk (a short tail joined it)
        (P[:38], P, 32),  # one token more than the cached prompt: no chunk of this prompt's cut ends at 38
        (P[:32], P, 32),  # the cached cells end on a chunk boundary
        (P[:36], P[:36] + OTHER, 32),  # 4 tokens after 32: a chunk of the cached prompt ended at 32
        (P[:35], P[:35] + OTHER, 16),  # 3 tokens after 32: the cached prompt's chunk spanned 16..35
        (P[:34], P[:34] + OTHER, 16),
        (P[:39], P[:34], 16),  # the new prompt (cut up to 33) has no chunk ending at 32
        (P[:39], P[:10] + OTHER, 0),  # less than a chunk shared
        ([], P, 0),
    ],
)
def test_reuse_ends_on_a_chunk_boundary_of_both_prompts(cached, prompt, expected) -> None:
    assert reusable(cached, prompt, CHUNK) == expected


def test_reuse_is_the_longest_start_that_is_a_boundary_of_both_cuts() -> None:
    rng = random.Random(15)
    for _ in range(400):
        base = [rng.randrange(3) for _ in range(rng.randrange(1, 90))]
        cached = base[: rng.randrange(0, len(base) + 1)]
        prompt = base[: rng.randrange(1, len(base) + 1)] + [rng.randrange(3) for _ in range(rng.randrange(0, 30))]
        n = reusable(cached, prompt, CHUNK)
        last = len(prompt) - 1
        shared = common_prefix(cached, prompt, last)

        def allowed(m: int, cached=cached, last=last) -> bool:
            return m == 0 or (boundary(m, last, CHUNK) and boundary(m, len(cached), CHUNK))

        assert (n % CHUNK == 0 or n == last == len(cached)) and n <= shared < len(prompt) and allowed(n)
        assert not any(allowed(m) for m in range(n + CHUNK, shared + 1, CHUNK)), (cached, prompt, n)
        if n:
            # What follows is the very chunk a cold start computes, and the cached cut ended one there.
            assert n in cut(0, last) and (n == len(cached) or n in cut(0, len(cached)))


LONG = list(range(200, 300))  # 99 prompt rows


@pytest.mark.parametrize(
    ("cached", "prompt", "expected"),
    [
        (P[:24], P, 16),  # both short: reused as without the rule
        (P[:39], P[:30] + OTHER[:10], 16),  # both short
        (P[:39], P, 39),  # the same short prompt again
        (P[:39], P + OTHER, 0),  # a short prompt's cells (one pass), a long prompt (69 rows): not reused
        (LONG[:80], LONG[:40], 0),  # a long prompt's cells, a short prompt: not reused
        (LONG[:99], LONG[:70] + OTHER, 64),  # both long, more than 56 cells reused
        (LONG[:99], LONG[:50] + OTHER, 0),  # both long, but 48 cells: its first call would end within 56
        (LONG[:99], LONG, 99),  # the same long prompt again
    ],
)
def test_where_short_prompts_are_read_in_one_pass_cells_go_only_to_prompts_of_their_kind(
    cached, prompt, expected
) -> None:
    """With ``one_pass`` = 56 (SmolLM2 and Gemma 3 with f16 K and V): prompts of at most 56 prompt rows are read in
    one pass, longer ones tiled from their first call, which ends past 56."""
    assert reusable(cached, prompt, CHUNK, one_pass=56) == expected
    assert reusable(cached, prompt, CHUNK) >= expected  # without the rule, every kind of cell is reused


def test_best_slot_keeps_to_cells_of_the_prompts_kind() -> None:
    short, long, empty = slot(0, P[:39], 5.0), slot(1, P + OTHER + [5] * 20, 1.0), slot(2)
    assert best_slot([short, long], P + OTHER, CHUNK, one_pass=56) == (long, 64)
    assert best_slot([short, empty], P + OTHER, CHUNK, one_pass=56) == (empty, 0)
    assert best_slot([short, empty], P + OTHER, CHUNK) == (short, 32)


def slot(seq_id: int, cached: list[int] | None = None, last_used: float = 0.0) -> Slot:
    return Slot(seq_id, list(cached or []), last_used=last_used)


def test_best_slot_takes_the_one_holding_the_longest_start_of_the_prompt() -> None:
    empty, mine, other = slot(0), slot(1, P[:39], 5.0), slot(2, OTHER[:20] + P, 1.0)
    assert best_slot([empty, mine, other], P[:35] + OTHER, CHUNK) == (mine, 32)
    assert best_slot([empty, other], P[:35] + OTHER, CHUNK) == (empty, 0)  # nothing shared: an empty one


def test_best_slot_leaves_a_cache_alone_that_shares_less_than_half() -> None:
    long_cache = slot(0, P[:20] + [7] * 80, last_used=5.0)
    free = [long_cache, slot(1, OTHER, last_used=2.0)]
    chosen, reused = best_slot(free, P[:20] + [9] * 10, CHUNK)
    assert reusable(long_cache.cached, P[:20] + [9] * 10, CHUNK) == 16  # it could give 16 ...
    assert (chosen, reused) == (free[1], 0)  # ... but 20 of its 100 is not enough


def test_without_a_fitting_cache_the_empty_then_the_least_recently_used_slot_goes() -> None:
    recent, old = slot(0, OTHER, last_used=9.0), slot(1, OTHER[:5], last_used=3.0)
    assert best_slot([recent, old], P, CHUNK) == (old, 0)
    assert best_slot([recent, old, slot(2)], P, CHUNK)[0].seq_id == 2
    assert best_slot([slot(0, P[:39], last_used=5.0), old], P, CHUNK, reuse=False) == (old, 0)


async def test_the_outbox_merges_text_and_sends_first_chunks_and_ends_at_once() -> None:
    request = GenerationRequest([1], SamplingParams(temperature=0), 8)
    job = Job(request, asyncio.get_running_loop())
    job.emit(Admitted(3))
    assert not job.flush(time.monotonic())
    job.emit(TextDelta(0, "a"))  # the first chunk leaves at once
    assert not job.flush(time.monotonic())
    job.emit(TextDelta(0, "b"))
    job.emit(TextDelta(0, "c"))
    job.emit(TextDelta(1, "x"))
    sent_at = job._flushed_at
    assert sent_at is not None
    assert job.flush(sent_at + FLUSH_INTERVAL / 2)  # held back: text goes at most every FLUSH_INTERVAL
    job.emit(CandidateFinished(0, FinishReason.MAX_TOKENS, 4))  # an end leaves at once, with what is held
    assert not job.flush(sent_at + FLUSH_INTERVAL / 2)
    job.emit(TextDelta(1, "y"))
    sent_at = job._flushed_at
    assert sent_at is not None
    assert job.flush(sent_at + FLUSH_INTERVAL / 2)
    assert not job.flush(sent_at + 1.5 * FLUSH_INTERVAL)  # held long enough: it goes
    await asyncio.sleep(0)
    sent = [job.events.get_nowait() for _ in range(job.events.qsize())]
    assert sent == [
        [Admitted(3)],
        [TextDelta(0, "a")],
        [TextDelta(0, "bc"), TextDelta(1, "x"), CandidateFinished(0, FinishReason.MAX_TOKENS, 4)],
        [TextDelta(1, "y")],
    ]


def test_a_job_expires_only_past_its_deadline() -> None:
    loop = asyncio.new_event_loop()
    try:
        job = Job(GenerationRequest([1], SamplingParams(temperature=0), 8, deadline=10.0), loop)
        assert not job.expired(10.0) and job.expired(10.5)
        assert not Job(GenerationRequest([1], SamplingParams(temperature=0), 8), loop).expired(1e12)
    finally:
        loop.close()

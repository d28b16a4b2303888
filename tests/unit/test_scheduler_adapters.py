"""LoRA adapters in the llama scheduler (tuned models): one decode call per adapter, prompts under their own
adapter, and prefix reuse only between requests of the same adapter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from localgem import errors
from localgem.engines.base import Admitted
from tests.unit.fake_decoder import continuation
from tests.unit.scheduler_harness import OTHER, A, B, Build, events_of, request, schedulers, submit, text


@pytest.fixture
def build() -> Iterator[Build]:
    with schedulers() as make:
        yield make


async def test_sequences_of_different_adapters_decode_in_separate_calls_each_under_its_adapter(build: Build) -> None:
    scheduler, decoder = build(3)
    decoder.hold()
    jobs = [
        submit(scheduler, request(A, 6)),
        submit(scheduler, request(B, 6, adapter="tuned-x")),
        submit(scheduler, request(A[:20], 6, adapter="tuned-y")),
    ]
    decoder.wait_held()
    decoder.release()
    results = await asyncio.gather(*(events_of(job) for job in jobs))
    assert [text(r) for r in results] == [continuation(A, 6), continuation(B, 6), continuation(A[:20], 6)]
    for batch, adapter in zip(decoder.batches, decoder.adapters, strict=True):
        owners = {item.sequence for item in batch}
        expected = {jobs[i].sequences[0].slot.seq_id if jobs[i].sequences else None for i in range(3)}
        assert owners <= expected | {0, 1, 2}
        # Every row of a call belongs to sequences of the adapter the call was made under.
        slots_of = {0: None, 1: "tuned-x", 2: "tuned-y"}
        assert {slots_of[s] for s in owners} == {adapter}
    steps = [(rows, adapter) for rows, adapter in zip(decoder.batches, decoder.adapters, strict=True) if rows[0].logits]
    assert {adapter for _, adapter in steps} == {None, "tuned-x", "tuned-y"}


async def test_a_slot_holding_another_adapters_cells_is_not_reused(build: Build) -> None:
    scheduler, decoder = build(2)
    await events_of(submit(scheduler, request(A, 3, adapter="tuned-x")))  # slot 0 keeps A[:39] under tuned-x
    events = await events_of(submit(scheduler, request(A[:35] + OTHER, 3)))  # the base model: nothing to reuse
    assert events[0] == Admitted(0)
    events = await events_of(submit(scheduler, request(A[:35] + OTHER, 3, adapter="tuned-x")))
    assert events[0] == Admitted(32)  # its own adapter's cells are
    events = await events_of(submit(scheduler, request(A[:35] + OTHER, 3)))
    assert events[0] == Admitted(len(A[:35] + OTHER) - 1)  # the base model's own cells, all of the same prompt


async def test_an_adapter_that_does_not_load_fails_its_request_alone(build: Build) -> None:
    scheduler, _decoder = build(2)
    bad = submit(scheduler, request(A, 3, adapter="missing-adapter"))
    good = submit(scheduler, request(B, 3))
    with pytest.raises(errors.FailedPrecondition):
        await events_of(bad)
    assert text(await events_of(good)) == continuation(B, 3)


async def test_mixed_steps_change_the_adapter_once_a_step_not_twice(build: Build) -> None:
    scheduler, decoder = build(2)
    decoder.hold()
    jobs = [submit(scheduler, request(A, 12)), submit(scheduler, request(B, 12, adapter="tuned-x"))]
    decoder.wait_held()
    decoder.release()
    await asyncio.gather(*(events_of(job) for job in jobs))
    steps = [adapter for batch, adapter in zip(decoder.batches, decoder.adapters, strict=True) if batch[0].logits]
    changes = sum(1 for before, after in zip(steps, steps[1:], strict=False) if before != after)
    both = len(steps) // 2  # steps in which both ran, as two calls each
    assert changes <= both + 1, steps  # each step starts with the adapter the last one ended with

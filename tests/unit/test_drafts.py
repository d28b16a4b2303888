"""Draft rows: prompt lookup's guesses, and a scheduler that takes a draft row where its decoder would give a lone
decode row a companion (``Decoder.split_rows``): the output is the output without drafts, and an accepted draft
saves a step."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localgem.engines.llama.decoder import BatchItem, lone_rows
from localgem.engines.llama.drafts import PromptLookup
from tests.unit.fake_decoder import ALPHABET, continuation
from tests.unit.scheduler_harness import Build, events_of, request, schedulers, submit, text

SPLIT_FROM = 30
OUTPUT = 60


def test_prompt_lookup_guesses_what_followed_the_last_two_tokens_before() -> None:
    lookup = PromptLookup()
    tokens = [1, 2, 3, 4, 1, 2]
    assert lookup.draft(tokens) == 3
    tokens += [9]
    assert lookup.draft(tokens) == 9  # (2, 9) never seen: the last token
    tokens += [1, 2]
    assert lookup.draft(tokens) == 9  # (1, 2) was last followed by 9
    assert PromptLookup().draft([5]) == 5
    assert PromptLookup().draft([7, 7, 7]) == 7


def test_lone_rows_are_a_sequences_only_row_with_no_neighbouring_sequence_in_the_step() -> None:
    def step(*rows: tuple[int, int]) -> list[BatchItem]:
        return [BatchItem(sequence, 1, position, True) for sequence, position in rows]

    assert lone_rows(step((0, 300)), 256) == [0]
    assert lone_rows(step((0, 200)), 256) == []  # short of the split kernel's reach
    assert lone_rows(step((0, 300), (1, 300)), 256) == []  # one run: read together
    assert lone_rows(step((0, 300), (2, 300), (3, 10)), 256) == [0]  # 2 runs with 3
    assert lone_rows(step((4, 300), (4, 301)), 256) == []  # a second row of its own (a draft)


def accepted_drafts(prompt: list[int], n: int) -> int:
    """How many drafts a lone sequence decoding ``n`` tokens greedily takes up (one draft a step once its last token
    is at SPLIT_FROM or past it, but for the step of its last output token), worked out from its output alone."""
    output = [ALPHABET.index(char) for char in continuation(prompt, n)]
    tokens, lookup, produced, accepted = list(prompt), PromptLookup(), 0, 0
    while produced < n:
        draft = lookup.draft(tokens) if len(tokens) - 1 >= SPLIT_FROM and produced + 1 < n else None
        tokens.append(output[produced])
        produced += 1
        if draft == tokens[-1]:
            accepted += 1
            tokens.append(output[produced])
            produced += 1
    return accepted


@pytest.fixture
def build() -> Iterator[Build]:
    with schedulers() as make:
        yield make


async def test_a_lone_sequence_takes_draft_rows_whose_accepted_guesses_save_steps(build: Build) -> None:
    prompt = next(
        p for p in ([k % 40 + seed for k in range(25)] for seed in range(1, 200)) if accepted_drafts(p, OUTPUT) >= 2
    )
    expected = accepted_drafts(prompt, OUTPUT)
    scheduler, decoder = build(1, split_from=SPLIT_FROM)
    events = await events_of(submit(scheduler, request(prompt, OUTPUT)))
    assert text(events) == continuation(prompt, OUTPUT)
    steps = [batch for batch in decoder.batches if batch[0].logits]
    assert len(steps) == OUTPUT - expected
    stats = scheduler.stats
    assert (stats.drafts_accepted, stats.tokens_generated, stats.decode_steps) == (expected, OUTPUT, len(steps))
    # Every step from SPLIT_FROM on held a draft row (at the next position), but the step of the last token.
    for batch in steps:
        lone = batch[0].position >= SPLIT_FROM and batch is not steps[-1]
        assert [item.position for item in batch] == (
            [batch[0].position, batch[0].position + 1] if lone else [batch[0].position]
        )
    assert stats.draft_rows == sum(len(batch) == 2 for batch in steps)
    assert decoder.cells[0] == prompt[:-1]  # its prompt cells (a draft cell left behind fails the next step)


async def test_sequences_in_neighbouring_slots_take_no_drafts(build: Build) -> None:
    scheduler, decoder = build(2, split_from=SPLIT_FROM)
    prompts = [[k % 40 + 3 for k in range(35)], [k % 30 + 7 for k in range(35)]]
    jobs = [submit(scheduler, request(prompt, 20)) for prompt in prompts]
    for job, prompt in zip(jobs, prompts, strict=True):
        assert text(await events_of(job)) == continuation(prompt, 20)
    together = [batch for batch in decoder.batches if batch[0].logits and len({i.sequence for i in batch}) == 2]
    assert together and all(len(batch) == 2 for batch in together)

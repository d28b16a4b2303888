"""Many clients at once, through the SDK: continuous batching must not change any answer."""

from __future__ import annotations

import asyncio

from google import genai
from google.genai import types

from localgem.settings import Settings
from tests.conftest import engine_of

MODEL = "gemini-2.5-flash"
TOPICS = ["rain", "cats", "the moon", "bread", "trains", "music", "winter", "bees"]


GUIDE = " ".join(f"Rule {i}: keep every line of the poem under {i + 5} words." for i in range(16))


def configs() -> list[types.GenerateContentConfig]:
    # Different seeds, temperatures and lengths: greedy and sampled requests side by side. Half
    # share a long system instruction, so prompts are cut in several chunks and reuse cached ones.
    return [
        types.GenerateContentConfig(
            seed=100 + i,
            temperature=0 if i % 2 else 0.9,
            top_k=40,
            top_p=0.95,
            max_output_tokens=12 + 5 * i,
            system_instruction=GUIDE if i % 4 < 2 else None,
        )
        for i in range(8)
    ]


async def stream_text(client: genai.Client, topic: str, config: types.GenerateContentConfig) -> str:
    stream = await client.aio.models.generate_content_stream(
        model=MODEL, contents=f"Write a short poem about {topic}.", config=config
    )
    return "".join([chunk.text or "" async for chunk in stream])


def test_eight_concurrent_streams_equal_their_solo_results(client: genai.Client, real_server) -> None:
    engine = engine_of(real_server)
    solo = [asyncio.run(stream_text(client, t, c)) for t, c in zip(TOPICS, configs(), strict=True)]
    steps, rows = engine.stats.decode_steps, engine.stats.decode_rows

    async def together() -> list[str]:
        return await asyncio.gather(*[stream_text(client, t, c) for t, c in zip(TOPICS, configs(), strict=True)])

    reused = engine.stats.prompt_tokens_reused
    concurrent = asyncio.run(together())
    assert concurrent == solo
    assert engine.stats.prompt_tokens_reused > reused  # cached chunks were reused, and changed nothing
    assert all(solo)
    # They really shared decode steps: on average well over one sequence per step.
    assert (engine.stats.decode_rows - rows) / (engine.stats.decode_steps - steps) > 2


def test_second_chat_turn_reuses_the_first_turns_cells(client: genai.Client) -> None:
    chat = client.chats.create(model=MODEL, config=types.GenerateContentConfig(temperature=0, max_output_tokens=20))
    notes = " ".join(f"Note {i}: the tide was {'high' if i % 2 else 'low'} at dawn." for i in range(20))
    first = chat.send_message(f"Here are my notes. {notes} Which note mentions a high tide first?")
    second = chat.send_message("And which note is the last one?")
    cached = second.usage_metadata.cached_content_token_count
    prompt = first.usage_metadata.prompt_token_count
    # The first turn's prompt came from the prefix cache, in whole chunks, not recomputed.
    chunk = Settings().prefill_chunk
    assert cached and cached % chunk == 0 and prompt - chunk < cached < prompt
    assert second.usage_metadata.cache_tokens_details[0].token_count == cached
    # The first turn shares at most the chat template's opening (and its first word) with earlier prompts: fewer
    # tokens than a one-word message's whole prompt.
    one_word = client.models.count_tokens(model=MODEL, contents="Here").total_tokens
    assert (first.usage_metadata.cached_content_token_count or 0) < one_word < cached

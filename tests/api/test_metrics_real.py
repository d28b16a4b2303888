"""/metrics on the real model: the engine's own counters move with real traffic."""

from __future__ import annotations

import httpx
from google import genai
from google.genai import types
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SMOLLM
from tests.server import RunningServer


def engine_counters(server: RunningServer) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics").text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("model") == SMOLLM
        and sample.name.startswith(("localgem_prompt", "localgem_tokens", "localgem_kv"))
    }


def test_the_engine_counters_follow_real_generation(real_server: RunningServer, client: genai.Client) -> None:
    before = engine_counters(real_server)
    prompt = "Name three colours of the rainbow, and say which is the warmest of them."
    config = types.GenerateContentConfig(max_output_tokens=8, temperature=0)
    first = client.models.generate_content(model="gemini-2.5-flash", contents=prompt, config=config)
    client.models.generate_content(model="gemini-2.5-flash", contents=prompt, config=config)
    after = engine_counters(real_server)
    generated = after["localgem_tokens_generated_total"] - before.get("localgem_tokens_generated_total", 0)
    assert generated == 2 * first.usage_metadata.candidates_token_count
    assert after["localgem_prompt_tokens_computed_total"] > before.get("localgem_prompt_tokens_computed_total", 0)
    # The second prompt starts like the first: its cells are reused (a prefix-cache hit, in tokens).
    assert after["localgem_prompt_tokens_reused_total"] > before.get("localgem_prompt_tokens_reused_total", 0)
    # What the slots hold after: the prompt's cells, kept as prefix cache (all but the last prompt token's, which
    # is decoded again by the next prompt that starts from them).
    assert after["localgem_kv_cells_used"] >= first.usage_metadata.prompt_token_count - 1

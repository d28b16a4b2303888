"""Gemma 3 270M with ``sliding_window_full = false``: its 15 sliding-window layers (a window of 512 positions)
keep only the window and a batch a slot (1,024 cells, not the slot's 2,048), and a slot's cells are reused only
while they still hold the window before the point a prompt goes on from."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from localgem.engines.base import Admitted, GenerationRequest, SamplingParams, TextDelta
from localgem.engines.llama.engine import LlamaCppEngine
from localgem.models.packaged import gemma3_270m

CACHE_LINE = re.compile(r"llama_kv_cache: size = .*\(\s*(\d+) cells,\s*(\d+) layers")


async def greedy(engine: LlamaCppEngine, prompt: list[int]) -> tuple[str, int]:
    """(text of 8 greedy tokens, prompt tokens reused)."""
    text, reused = "", -1
    async for event in engine.generate(GenerationRequest(prompt, SamplingParams(temperature=0), 8)):
        if isinstance(event, Admitted):
            reused = event.cached_tokens
        elif isinstance(event, TextDelta):
            text += event.text
    return text, reused


def test_windowed_sliding_layers_keep_their_window_and_reuse_only_what_they_hold(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="localgem.llama_cpp.native")
    engine = LlamaCppEngine(gemma3_270m(tmp_path), context_length=2048, slots=1, sliding_window_full=False)
    try:
        caches = [tuple(map(int, m.groups())) for r in caplog.records if (m := CACHE_LINE.search(r.getMessage()))]
        assert sorted(caches) == [(1024, 15), (2048, 3)]  # (cells a slot, layers): full ones, and windowed ones

        async def scenario() -> None:
            story = " ".join(f"On day {n} the keeper of the lighthouse wrote down the weather." for n in range(1, 115))
            long = await engine.tokenize(story, True)
            assert 1300 < len(long) < 1900  # past the windowed layers' 1,024 cells
            # It shares over half of the long prompt's cells (else a slot would not be taken for them at all).
            short = long[: len(long) // 2 + 16] + await engine.tokenize(" And then the storm came, and", False)

            first_short, reused = await greedy(engine, short)
            assert reused == 0 and first_short.strip()
            first_long, reused = await greedy(engine, long)
            assert reused > 500  # it went on from the short prompt's cells: all still held then
            again_long, reused = await greedy(engine, long)
            assert reused == len(long) - 1 and again_long == first_long  # the window before its end is held
            # The long prompt's cells overwrote the early ones the short prompt would go on from (going on at
            # position n needs the window from n - 512 on; the last 1,024 of the long prompt's are held): computed
            # whole, the same text as the first time.
            again_short, reused = await greedy(engine, short)
            assert reused == 0 and again_short == first_short

        asyncio.run(scenario())
    finally:
        asyncio.run(engine.close())

"""A prompt's numbers do not depend on where it was cut into decode calls (SmolLM2 and Gemma 3, llama.cpp itself).

The scheduler reads a prompt in calls of whole chunks, from wherever reuse starts it; a cold start cuts it
elsewhere. llama.cpp's CPU kernels take other paths for what is left over from a multiple of a few rows or cells,
so ``NativeModel`` ends each prompt call on a multiple of 8 cells with filler rows (removed after). Here the same
prompt, cut many ways, must give bit-identical logits for its next token, with flash attention (V cached as bf16,
K as q8_0, the default, and as f16) and without.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from localgem.engines.llama.decoder import BatchItem
from localgem.engines.llama.native import NativeModel
from localgem.models.packaged import gemma3_270m, smollm2_135m_instruct

WORDS = "river stone lamp garden window paper yellow quiet morning letter bridge music salt orange cloud map".split()
RULES = " ".join(f"Rule {i}: answer in plain words and keep each line short." for i in range(6))


@pytest.fixture(
    scope="module",
    params=[
        (smollm2_135m_instruct, 6, True, "q8_0"),
        (gemma3_270m, 2, True, "q8_0"),
        (smollm2_135m_instruct, 6, True, "f16"),
        (smollm2_135m_instruct, 6, False, "q8_0"),
        (gemma3_270m, 2, False, "q8_0"),
    ],
    ids=["smollm2", "gemma3", "smollm2-f16-k", "smollm2-plain", "gemma3-plain"],
)
def model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[NativeModel, int]]:
    """The model, and the step between the prompt lengths (in words) tried on it."""
    weights: Callable[[Path], Path] = request.param[0]
    native = NativeModel(
        weights(tmp_path_factory.mktemp("models")),
        slots=2,
        sequence_length=1024,
        batch_size=512,
        threads=None,
        flash_attention=request.param[2],
        key_type=request.param[3],
    )
    yield native, request.param[1]
    native.close()


def next_token_logits(model: NativeModel, tokens: list[int], cuts: list[int]) -> np.ndarray:
    """Decode ``tokens`` but the last in calls ending at ``cuts`` (then at the last token), then the last token in a
    step of its own, as the scheduler does; the logits of that step."""
    model.clear()
    last = len(tokens) - 1
    start = 0
    for end in [*cuts, last]:
        assert model.decode([BatchItem(0, t, start + i, False) for i, t in enumerate(tokens[start:end])])
        start = end
    assert model.decode([BatchItem(0, tokens[last], last, True)])
    return model.logits(0).copy()


def test_the_cut_of_a_prompt_changes_no_number(model: tuple[NativeModel, int]) -> None:
    """Prompts of ~85 to ~150 tokens, each whole in one call, and cut where a reused slot would go on from. (Without
    the filler rows, Gemma's prompts of 101 and 103 tokens differed here.)"""
    model, step = model
    for words in range(5, 60, step):
        text = f"{RULES}\n" + " ".join(WORDS[(i * 7 + i // 3) % len(WORDS)] for i in range(words))
        tokens = model.tokenize(text, add_bos=model.info.add_bos)
        last = len(tokens) - 1
        whole = next_token_logits(model, tokens, [])
        cut = max(n for n in range(16, last, 16) if last - n >= 4)  # the last chunk boundary before the end
        assert np.array_equal(next_token_logits(model, tokens, [cut]), whole), (len(tokens), cut)

"""A prompt's numbers do not depend on where it was cut into decode calls (SmolLM2 and Gemma 3, llama.cpp itself).

The scheduler reads a prompt in calls of whole chunks, from wherever reuse starts it; a cold start cuts it
elsewhere. llama.cpp's CPU kernels take other paths for what is left over from a multiple of a few rows or cells,
so ``NativeModel`` ends each prompt call on a multiple of 8 cells with filler rows (removed after), and pads it to
64 rows where prompts are read by llama.cpp's tiled attention kernel (K and V as f16, the default). Here the same
prompt, cut many ways, must give bit-identical logits for its next token, with flash attention (K and V as f16, the
default; K as q8_0 with V as bf16) and without; and a lone decode row past 512 cells, which llama.cpp would read with
its split kernel, must give the logits it gives among other sequences.
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
        (smollm2_135m_instruct, 6, True, "f16"),
        (gemma3_270m, 2, True, "f16"),
        (smollm2_135m_instruct, 6, True, "q8_0"),
        (smollm2_135m_instruct, 6, False, "q8_0"),
        (gemma3_270m, 2, False, "q8_0"),
    ],
    ids=["smollm2", "gemma3", "smollm2-q8-k", "smollm2-plain", "gemma3-plain"],
)
def model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[NativeModel, int]]:
    """The model, and the step between the prompt lengths (in words) tried on it."""
    weights: Callable[[Path], Path] = request.param[0]
    native = NativeModel(
        weights(tmp_path_factory.mktemp("models")),
        slots=3,
        sequence_length=1024,
        batch_size=512,
        threads=None,
        flash_attention=request.param[2],
        key_type=request.param[3],
    )
    yield native, request.param[1]
    native.close()


def next_token_logits(
    model: NativeModel, tokens: list[int], cuts: list[int], beside: tuple[int, list[int]] | None = None
) -> np.ndarray:
    """Decode ``tokens`` but the last in calls ending at ``cuts`` (then at the last token), then the last token in a
    step of its own, as the scheduler does; the logits of that step. ``beside``: (a sequence, a prompt read into it
    too, whose last token is decoded in that step after ``tokens``' row)."""
    model.clear()
    last = len(tokens) - 1
    start = 0
    for end in [*cuts, last]:
        assert model.decode([BatchItem(0, t, start + i, False) for i, t in enumerate(tokens[start:end])])
        start = end
    step = [BatchItem(0, tokens[last], last, True)]
    if beside is not None:
        sequence, other = beside
        assert model.decode([BatchItem(sequence, t, i, False) for i, t in enumerate(other[:-1])])
        step.append(BatchItem(sequence, other[-1], len(other) - 1, True))
    assert model.decode(step)
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


def test_a_short_prompt_read_in_one_pass_gives_the_same_numbers_however_it_is_cut(
    model: tuple[NativeModel, int],
) -> None:
    """A prompt of at most ``one_pass_cells`` prompt rows is read without filler to 64 rows: in one pass, whole or
    cut at any chunk boundary. The two readings are not the same numbers (a long prompt whose first call ended
    within those cells would differ from its cold start), which is why the scheduler and prefix reuse keep them
    apart."""
    model, _ = model
    if not model.one_pass_cells:
        pytest.skip("every prompt call is read alike here")
    short = 0
    for words in range(2, 60, 3):
        tokens = model.tokenize(
            " ".join(WORDS[(i * 3 + i // 5) % len(WORDS)] for i in range(words)), model.info.add_bos
        )
        last = len(tokens) - 1
        whole = next_token_logits(model, tokens, [])
        if last > model.one_pass_cells:
            continue
        short += 1
        for cut in range(4, last - 3, 4):
            assert np.array_equal(next_token_logits(model, tokens, [cut]), whole), (last, cut)
    assert short >= 8
    differs = 0
    for words in range(30, 70, 8):
        tokens = model.tokenize(
            f"{RULES}\n" + " ".join(WORDS[i % len(WORDS)] for i in range(words)), model.info.add_bos
        )
        whole = next_token_logits(model, tokens, [])
        differs += not np.array_equal(next_token_logits(model, tokens, [32]), whole)
    assert differs


def test_a_lone_decode_row_deep_in_gives_the_logits_it_gives_among_others(model: tuple[NativeModel, int]) -> None:
    """~600 cells in, a decode row alone in its step, beside the next stream's row (llama.cpp reads the two in one
    pass), and beside a row two streams on (llama.cpp reads each run of consecutive streams apart: each row alone)
    give the same logits. With f16 K and V llama.cpp would split a lone row's cells across threads;
    ``NativeModel._companions`` keeps it off that kernel."""
    model, _ = model
    text = f"{RULES}\n" + " ".join(WORDS[(i * 5 + i // 4) % len(WORDS)] for i in range(520))
    tokens = model.tokenize(text, add_bos=model.info.add_bos)
    other = model.tokenize(RULES, add_bos=model.info.add_bos)
    assert len(tokens) > 520
    alone = next_token_logits(model, tokens, [256])  # calls of at most the context's batch of 512 rows
    assert np.array_equal(next_token_logits(model, tokens, [256], beside=(1, other)), alone)
    assert np.array_equal(next_token_logits(model, tokens, [256], beside=(2, other)), alone)


def test_a_draft_row_gives_the_logits_the_next_step_gives(model: tuple[NativeModel, int]) -> None:
    """Where a lone decode row would take a companion row, the scheduler gives it a draft row instead: a guess at the
    next token at the next position of its own stream (``localgem.engines.llama.drafts``). Both rows of that step
    give the logits that step and the next, each alone (with its companion), give."""
    model, _ = model
    text = f"{RULES}\n" + " ".join(WORDS[(i * 5 + i // 4) % len(WORDS)] for i in range(520))
    tokens = model.tokenize(text, add_bos=model.info.add_bos)
    last = len(tokens) - 1
    if not model.split_rows([BatchItem(0, tokens[last], last, True)]):
        pytest.skip("no decode row is split here")
    alone = next_token_logits(model, tokens, [256])
    guess = int(np.argmax(alone))
    assert model.decode([BatchItem(0, guess, last + 1, True)])
    after = model.logits(0).copy()
    model.forget(0, last)  # back to the prompt's cells: its last token and the guess in one step
    step = [BatchItem(0, tokens[last], last, True), BatchItem(0, guess, last + 1, True)]
    assert model.split_rows(step) == [] and model.decode(step)
    assert np.array_equal(model.logits(0), alone) and np.array_equal(model.logits(1), after)

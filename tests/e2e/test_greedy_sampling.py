"""Greedy sampling reads the most likely token straight off the logits, and picks what llama.cpp's greedy sampler
picks (SmolLM2 on real llama.cpp): over a model's real logits, and over logits with ties."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import numpy as np
import pytest

from localgem.engines.base import SamplingParams
from localgem.engines.llama.decoder import BatchItem
from localgem.engines.llama.native import NativeModel
from localgem.engines.llama.sampler import _candidates, _token_array
from localgem.models.packaged import smollm2_135m_instruct


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeModel]:
    native = NativeModel(
        smollm2_135m_instruct(tmp_path_factory.mktemp("models")),
        slots=2,
        sequence_length=512,
        batch_size=64,
        threads=None,
    )
    yield native
    native.close()


def llama_greedy(model: NativeModel, logits: np.ndarray) -> int:
    """llama.cpp's own greedy sampler over these logits."""
    lc = model.lc
    greedy = lc.llama_sampler_init_greedy()
    try:
        candidates = _candidates(logits)
        array = _token_array(lc, candidates)
        lc.llama_sampler_apply(greedy, ctypes.byref(array))
        return int(candidates["id"][array.selected])
    finally:
        lc.llama_sampler_free(greedy)


def test_greedy_generation_picks_what_llama_cpps_greedy_sampler_picks(model: NativeModel) -> None:
    model.clear()
    sampler = model.sampler(SamplingParams(temperature=0), seed=None, window=64)
    tokens = model.tokenize("<|im_start|>user\nName three rivers of Europe.<|im_end|>\n<|im_start|>assistant\n", False)
    assert model.decode([BatchItem(0, t, i, i == len(tokens) - 1) for i, t in enumerate(tokens)])
    row, position, picked = len(tokens) - 1, len(tokens), []
    for _ in range(40):
        expected = llama_greedy(model, model.logits(row))
        token = sampler.sample(row)
        assert token == expected
        picked.append(token)
        assert model.decode([BatchItem(0, token, position, True)])
        row, position = 0, position + 1
    sampler.close()
    assert len(set(picked)) > 5  # a real answer, not one token over and over


def test_equal_maxima_give_the_first_as_llama_cpp_does(model: NativeModel, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    sampler = model.sampler(SamplingParams(temperature=0), seed=None, window=8)
    for _ in range(20):
        logits = rng.integers(-3, 4, model.vocab_size).astype(np.float32)  # many tokens share the top value
        top = np.flatnonzero(logits == logits.max())
        assert len(top) > 1
        monkeypatch.setattr(model, "logits", lambda _row, values=logits: values)
        assert sampler.sample(0) == llama_greedy(model, logits) == top[0]
    sampler.close()

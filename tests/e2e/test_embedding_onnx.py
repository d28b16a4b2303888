"""The packaged all-MiniLM-L6-v2 on ONNX Runtime (``engines.embedding.onnx_forward``): the vectors PyTorch's
sentence-transformers gives, however a call's texts are cut into passes; and PyTorch where the export is refused."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest

from localgem.engines.embedding import onnx_forward
from localgem.engines.embedding.engine import EmbeddingBatcher, SentenceTransformerEmbedder
from localgem.models.packaged import all_minilm_l6_v2

WORDS = "river stone lamp garden window paper yellow quiet morning letter bridge music salt orange cloud".split()


def texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60))) + "." for _ in range(count)]


def normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def embedder() -> Iterator[SentenceTransformerEmbedder]:
    model = SentenceTransformerEmbedder(all_minilm_l6_v2(None), max_tokens=None, batch_size=32, threads=None)
    yield model
    model.close()


def test_the_vectors_are_pytorchs_however_the_texts_are_grouped(embedder: SentenceTransformerEmbedder) -> None:
    assert embedder.runtime == "onnxruntime"
    corpus = texts(120, 1)
    # PyTorch, as sentence-transformers has it
    expected = embedder._model.encode(corpus, batch_size=32, normalize_embeddings=True)
    together = normalised(embedder.embed(corpus))
    assert np.abs(together - expected).max() < 1e-5
    alone = normalised(np.concatenate([embedder.embed([text]) for text in corpus[:12]]))
    assert np.abs(alone - expected[:12]).max() < 1e-5
    mixed = normalised(embedder.embed(corpus[60:] + corpus[:5]))
    assert np.abs(mixed[-5:] - expected[:5]).max() < 1e-5
    long = "a " * 600  # cut to the model's 256 tokens, as sentence-transformers cuts it
    cut = embedder._model.encode([long], normalize_embeddings=True)
    assert np.abs(normalised(embedder.embed([long])) - cut).max() < 1e-5


def test_a_model_whose_export_differs_stays_on_pytorch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_forward, "TOLERANCE", -1.0)
    model = SentenceTransformerEmbedder(all_minilm_l6_v2(None), max_tokens=None, batch_size=32, threads=None)
    try:
        assert model.runtime == "torch"
        corpus = texts(40, 2)
        expected = model._model.encode(corpus, normalize_embeddings=True)
        assert np.abs(normalised(model.embed(corpus)) - expected).max() < 1e-5
    finally:
        model.close()


async def test_a_round_reads_each_text_s_tokens_once(
    embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batcher counts a round's tokens (for the reply and the cut), and the engine cuts its passes by those
    counts instead of counting again; the vectors are those of a call that counts for itself."""
    counted: list[int] = []
    count_tokens = embedder.count_tokens
    monkeypatch.setattr(embedder, "count_tokens", lambda given: counted.append(len(given)) or count_tokens(given))
    corpus = [*texts(30, 3), "a " * 600]
    done = await EmbeddingBatcher(embedder).embed(corpus, [True] * len(corpus))
    assert counted == [len(corpus)]
    assert [d.tokens for d in done] == count_tokens(corpus) and done[-1].tokens > embedder.info.max_tokens
    found = normalised(np.stack([d.vector for d in done]))
    assert np.array_equal(found, normalised(embedder.embed(corpus)))

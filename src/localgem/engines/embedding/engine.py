"""Embedding engines: one small interface, and a batcher that lets concurrent callers share batches.

Engines are synchronous and not thread-safe (Hugging Face fast tokenizers refuse concurrent use);
``EmbeddingBatcher`` runs the calls of one engine one at a time, off the event loop, each on a thread that ends
with it (see ``localgem.one_thread``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from localgem.engines.embedding.onnx_forward import onnx_sentence_model
from localgem.one_thread import in_a_thread_of_its_own

T = TypeVar("T")


@dataclass(frozen=True)
class EmbedderInfo:
    dimensions: int
    max_tokens: int  # longest input, special tokens included; longer ones are cut by ``embed``
    prompts: dict[str, str]  # the model's own prompt name → prefix (sentence-transformers' convention)


@dataclass
class EmbedderStats:
    calls: int = 0  # calls of ``embed``: concurrent requests that share one count once
    texts: int = 0


class Embedder(Protocol):
    info: EmbedderInfo
    stats: EmbedderStats

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text as the model would see it, special tokens included, before any cut."""
        ...

    def embed(self, texts: Sequence[str], tokens: Sequence[int] | None = None) -> np.ndarray:
        """One pooled vector per text (rows, float32), not normalised. ``tokens``: each text's ``count_tokens``,
        where the caller has counted them already."""
        ...

    def close(self) -> None: ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model folder (the packaged all-MiniLM-L6-v2 is one): on ONNX Runtime where the whole
    model exports with PyTorch's numbers (``onnx_forward``), else on PyTorch."""

    def __init__(self, folder: Path, *, max_tokens: int | None, batch_size: int, threads: int | None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a folder on disk: nothing may be fetched from a hub
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        if max_tokens is not None:
            self._model.max_seq_length = min(self._model.max_seq_length or max_tokens, max_tokens)
        self._batch_size = batch_size
        size = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dimensions = size()
        if not dimensions or not self._model.max_seq_length:
            raise ValueError(f"{folder} is not a sentence-transformers model with a fixed size")
        self.info = EmbedderInfo(dimensions, self._model.max_seq_length, dict(self._model.prompts or {}))
        self.stats = EmbedderStats()
        self._onnx = onnx_sentence_model(self._model, threads or torch.get_num_threads())
        self._pass_cost = ONNX_PASS_COST if self._onnx is not None else TORCH_PASS_COST

    @property
    def runtime(self) -> str:
        return "onnxruntime" if self._onnx is not None else "torch"

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        encoded = self._model.tokenizer(list(texts), add_special_tokens=True, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def embed(self, texts: Sequence[str], tokens: Sequence[int] | None = None) -> np.ndarray:
        self.stats.calls += 1
        self.stats.texts += len(texts)
        limit = self.info.max_tokens
        lengths = [min(n, limit) for n in (self.count_tokens(texts) if tokens is None else tokens)]
        vectors = np.zeros((len(texts), self.info.dimensions), dtype=np.float32)
        for group in passes(lengths, self._pass_cost, self._batch_size * 32, self._batch_size * 2):
            chosen = [texts[k] for k in group]
            if self._onnx is not None:
                vectors[group] = self._onnx.vectors(chosen)
            else:
                vectors[group] = self._model.encode(
                    chosen, batch_size=len(group), convert_to_numpy=True, normalize_embeddings=False
                )
        return vectors

    def close(self) -> None:
        del self._model
        self._onnx = None


#: What one forward pass costs beyond its tokens, in tokens' worth of time (all-MiniLM-L6-v2 on two cores: ~6 ms
#: a pass on PyTorch, ~2 ms on ONNX Runtime, ~0.1 ms a token on either). It sets how small ``passes`` cuts.
TORCH_PASS_COST = 80
ONNX_PASS_COST = 20


def passes(lengths: Sequence[int], pass_cost: float, budget: int, max_rows: int) -> list[list[int]]:
    """The texts (by index, longest first) in forward passes that cost least in all: each pass costs
    ``pass_cost`` plus its rows times its longest text (the others are padded to it). A pass holds at most
    ``max_rows`` texts and ``budget`` tokens, padding included, unless one text alone is longer.
    Sentence-transformers batches a long list sorted by length, where a batch pads little; a server sees few texts
    at a time, whose fixed-size batches would pad a fifth of their tokens."""
    order = sorted(range(len(lengths)), key=lambda k: -lengths[k])
    longest = [lengths[k] for k in order]
    best = [0.0] + [float("inf")] * len(order)
    start_of = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end - 1, -1, -1):  # the pass order[start:end], padded to longest[start]
            rows = end - start
            if rows > max_rows or rows > 1 and rows * longest[start] > budget:
                break
            cost = best[start] + pass_cost + rows * longest[start]
            if cost < best[end]:
                best[end], start_of[end] = cost, start
    groups = []
    end = len(order)
    while end:
        groups.append(order[start_of[end] : end])
        end = start_of[end]
    return groups[::-1]


class LlamaEmbedder:
    """An embedding GGUF (BERT-style, or any GGUF pooled by mean) through llama.cpp's embedding mode."""

    def __init__(self, gguf: Path, *, max_tokens: int | None, batch_size: int, threads: int | None) -> None:
        import llama_cpp

        # The GGUF's metadata says its trained context and whether it pools (BERT-style embedding
        # models do; a chat model's hidden states are mean-pooled here).
        probe = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
        metadata = probe.metadata
        probe.close()
        architecture = metadata.get("general.architecture", "")
        trained = int(metadata.get(f"{architecture}.context_length", 512))
        pooled = metadata.get(f"{architecture}.pooling_type", "0") not in ("0", "-1")
        context = min(max_tokens or trained, trained)
        # Embedding mode computes every sequence of a call in one batch (llama-cpp-python gives each
        # its own sequence id in a unified KV cache): room for several inputs of the longest size.
        n_batch = context * min(batch_size, 8)
        self._model = llama_cpp.Llama(
            model_path=str(gguf),
            embedding=True,
            n_ctx=n_batch,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=threads,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if pooled else llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            verbose=False,
        )
        # GGUF files carry no prompt names; configure them with the model's ``prompts``.
        self.info = EmbedderInfo(self._model.n_embd(), context, {})
        self.stats = EmbedderStats()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self._model.tokenize(text.encode("utf-8"), add_bos=True, special=False)) for text in texts]

    def embed(self, texts: Sequence[str], tokens: Sequence[int] | None = None) -> np.ndarray:
        self.stats.calls += 1
        self.stats.texts += len(texts)
        limit = self.info.max_tokens
        known = tokens if tokens is not None else [limit + 1] * len(texts)  # unknown: looked at by ``_cut``
        inputs = [text if count <= limit else self._cut(text) for text, count in zip(texts, known, strict=True)]
        vectors = self._model.embed(inputs, normalize=False, truncate=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.info.dimensions)

    def _cut(self, text: str) -> str:
        """The text, shortened to the longest input (only callers that allow cutting send longer ones)."""
        tokens = self._model.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(tokens) < self.info.max_tokens:
            return text
        return self._model.detokenize(tokens[: self.info.max_tokens - 1]).decode("utf-8", errors="ignore")

    def close(self) -> None:
        self._model.close()


def load_embedder(path: Path, *, max_tokens: int | None, batch_size: int, threads: int | None) -> Embedder:
    """A sentence-transformers folder, or a GGUF file."""
    if path.is_dir():
        return SentenceTransformerEmbedder(path, max_tokens=max_tokens, batch_size=batch_size, threads=threads)
    return LlamaEmbedder(path, max_tokens=max_tokens, batch_size=batch_size, threads=threads)


@dataclass(frozen=True)
class EmbeddedText:
    """A text's token count, and its vector (None: longer than the model takes, and not to be cut)."""

    tokens: int
    vector: np.ndarray | None


@dataclass
class _Job:
    texts: Sequence[str]
    may_cut: Sequence[bool]
    future: asyncio.Future[list[EmbeddedText]]
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.texts)


class EmbeddingBatcher:
    """Queues the texts of concurrent callers and computes them together, one batch at a time, on
    the engine's own thread: a round counts every queued text's tokens, then embeds those that fit.
    A caller that goes away before its round starts costs nothing."""

    def __init__(self, embedder: Embedder, max_texts: int = 256) -> None:
        self.embedder = embedder
        self._max_texts = max_texts
        self._one_at_a_time = threading.Lock()  # the embedder's tokenizer and model, between callers' threads
        self._pending: list[_Job] = []
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    @property
    def info(self) -> EmbedderInfo:
        return self.embedder.info

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return await self._in_own_thread(self.embedder.count_tokens, texts)

    async def embed(self, texts: Sequence[str], may_cut: Sequence[bool]) -> list[EmbeddedText]:
        """Each text's vector; a text over ``info.max_tokens`` is cut where ``may_cut``, else skipped."""
        if not texts:
            return []
        job = _Job(texts, may_cut, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        return await job.future

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                jobs = self._take()
                if not jobs:
                    continue
                texts = [text for job in jobs for text in job.texts]
                may_cut = [cut for job in jobs for cut in job.may_cut]
                try:
                    results = await self._in_own_thread(self._round, texts, may_cut)
                except Exception as exc:  # the engine failed: every caller of this round hears it
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                start = 0
                for job in jobs:
                    if not job.future.done():
                        job.future.set_result(results[start : start + job.size])
                    start += job.size

    async def _in_own_thread(self, call: Callable[..., T], *args: Any) -> T:
        """PyTorch's work on a thread that ends with it (see ``localgem.one_thread``), one call at a time."""

        def locked() -> T:
            with self._one_at_a_time:
                return call(*args)

        return await in_a_thread_of_its_own("embed", locked)

    def _round(self, texts: list[str], may_cut: list[bool]) -> list[EmbeddedText]:
        counts = self.embedder.count_tokens(texts)
        limit = self.info.max_tokens
        fitting = [k for k, count in enumerate(counts) if count <= limit or may_cut[k]]
        vectors = self.embedder.embed([texts[k] for k in fitting], [counts[k] for k in fitting]) if fitting else []
        found: dict[int, np.ndarray] = dict(zip(fitting, vectors, strict=True))
        return [EmbeddedText(count, found.get(k)) for k, count in enumerate(counts)]

    def _take(self) -> list[_Job]:
        """Whole jobs, oldest first, up to ``max_texts`` texts (always at least one job)."""
        taken: list[_Job] = []
        total = 0
        while self._pending and (not taken or total + self._pending[0].size <= self._max_texts):
            job = self._pending.pop(0)
            if job.future.done():  # its caller was cancelled
                continue
            taken.append(job)
            total += job.size
        return taken

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        for job in self._pending:
            if not job.future.done():
                job.future.cancel()
        self._pending.clear()
        await self._in_own_thread(self.embedder.close)

"""llama.cpp's batch API called directly in this process: the most its kernels give on this machine.

``bench/throughput.py`` measures localgem's streams against this: the same rendered prompts, greedy, decoded one
sequence at a time and eight together in one context made as localgem makes its own (one KV stream of 8,192 cells
per sequence, the same batch size, threads and attention). Nothing here knows about HTTP, queues or sampling
settings: what 8 streams ÷ 1 can reach is this ratio, not llama-server's.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import multiprocessing
import os
import time
from pathlib import Path

import llama_cpp as lc
import numpy as np

from localgem.engines.llama.native import GGML_TYPES

SLOTS = 8
CELLS_PER_SLOT = 8192
BATCH = 512
#: localgem's attention settings by the bench's names: (flash_attention, batch_invariant, cache_type_k).
ATTENTIONS = {
    "plain": (False, True, "q8_0"),
    "flash": (True, True, "f16"),
    "flash-q8k": (True, True, "q8_0"),
    "fast": (True, False, "f16"),
}


class LlamaBatch:
    """One model and one context of ``SLOTS`` sequences; ``run`` decodes prompts together, greedily.
    ``attention``: one of ATTENTIONS, as localgem makes its context for it (one mode a process: ggml reads its
    tiled-kernel switch once, see ``measure``)."""

    def __init__(self, path: Path, attention: str) -> None:
        flash_attention, batch_invariant, key_type = ATTENTIONS[attention]
        if batch_invariant:  # as NativeModel (``choose_matmul_kernels``): K-quant weights by ggml's dot products alone
            os.environ["GGML_CPU_TILED_MM"] = "0"
        lc.llama_backend_init()
        model_params = lc.llama_model_default_params()
        model_params.n_gpu_layers = 0
        model_params.use_extra_bufts = not batch_invariant
        self.model = lc.llama_model_load_from_file(str(path).encode(), model_params)
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.add_bos = bool(lc.llama_vocab_get_add_bos(self.vocab))
        self.bos_text = lc.llama_vocab_get_text(self.vocab, lc.llama_vocab_bos(self.vocab)) or b""
        self.vocab_size = lc.llama_vocab_n_tokens(self.vocab)
        threads = os.cpu_count() or 1
        params = lc.llama_context_default_params()
        params.n_ctx = CELLS_PER_SLOT * SLOTS
        params.n_batch = params.n_ubatch = BATCH
        params.n_seq_max = SLOTS
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = False
        params.flash_attn_type = 1 if flash_attention else 0
        if flash_attention and batch_invariant:  # as NativeModel: K as cache_type_k, V as f16 beside f16 K, else bf16
            params.type_k = GGML_TYPES[key_type]
            params.type_v = GGML_TYPES["f16" if key_type == "f16" else "bf16"]
        params.no_perf = True
        self.ctx = lc.llama_init_from_model(self.model, params)
        self.memory = lc.llama_get_memory(self.ctx)
        self.batch = lc.llama_batch_init(BATCH, 0, 1)

    def close(self) -> None:
        lc.llama_batch_free(self.batch)
        lc.llama_free(self.ctx)
        lc.llama_model_free(self.model)

    def tokens(self, text: str) -> list[int]:
        """A rendered prompt's tokens, as localgem reads it: with the BOS token the model wants, unless the
        template wrote it."""
        raw = text.encode()
        add_bos = self.add_bos and not (self.bos_text and raw.startswith(self.bos_text))
        buffer = (lc.llama_token * (len(raw) + 8))()
        n = lc.llama_tokenize(self.vocab, raw, len(raw), buffer, len(buffer), add_bos, True)
        return list(buffer[:n])

    def run(self, prompts: list[list[int]], tokens: int) -> tuple[int, float]:
        """Decodes ``prompts`` (at most ``SLOTS``) together, each up to ``tokens`` tokens or its end: (tokens
        produced, seconds)."""
        for sequence in range(len(prompts)):
            lc.llama_memory_seq_rm(self.memory, sequence, -1, -1)
        produced = 0
        pending: dict[int, tuple[int, int]] = {}  # sequence -> (its next token, that token's position)

        def accept(sequence: int, token: int, position: int) -> None:
            nonlocal produced
            if lc.llama_vocab_is_eog(self.vocab, token):
                return
            produced += 1
            if position - len(prompts[sequence]) + 1 < tokens:
                pending[sequence] = (token, position)

        start = time.perf_counter()
        rows = [(sequence, token, position) for sequence, p in enumerate(prompts) for position, token in enumerate(p)]
        for first in range(0, len(rows), BATCH):  # the prompts, read together
            chunk = rows[first : first + BATCH]
            wanted = [position == len(prompts[sequence]) - 1 for sequence, _, position in chunk]
            self._decode(chunk, wanted)
            for i, (sequence, _, position) in enumerate(chunk):
                if wanted[i]:
                    accept(sequence, self._greedy(i), position + 1)
        while pending:  # then one row per sequence a step
            step = [(sequence, *pending[sequence]) for sequence in sorted(pending)]
            pending.clear()
            self._decode(step, [True] * len(step))
            for i, (sequence, _, position) in enumerate(step):
                accept(sequence, self._greedy(i), position + 1)
        return produced, time.perf_counter() - start

    def _decode(self, rows: list[tuple[int, int, int]], logits: list[bool]) -> None:
        batch = self.batch
        for i, ((sequence, token, position), wanted) in enumerate(zip(rows, logits, strict=True)):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = sequence
            batch.logits[i] = wanted
        batch.n_tokens = len(rows)
        if lc.llama_decode(self.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    def logits(self, row: int) -> np.ndarray:
        """The last call's logits of ``row`` (llama.cpp's buffer, valid until the next call)."""
        pointer = lc.llama_get_logits_ith(self.ctx, row)
        return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), (self.vocab_size,))

    def _greedy(self, row: int) -> int:
        return int(np.argmax(self.logits(row)))


def measure(path: Path, attention: str, texts: list[str], tokens: int) -> dict[str, float]:
    """Rendered prompts through llama.cpp's batch API in a process of their own (ggml reads its switches once per
    process): 4 one at a time ("b") and 8 together ("c8"), tok/s."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measure_here, path, attention, texts, tokens).result()


def _measure_here(path: Path, attention: str, texts: list[str], tokens: int) -> dict[str, float]:
    batch = LlamaBatch(path, attention)
    try:
        prompts = [batch.tokens(text) for text in texts[:8]]
        alone = [batch.run([prompt], tokens) for prompt in prompts[:4]]
        together = batch.run(prompts, tokens)
    finally:
        batch.close()
    return {"b": sum(n for n, _ in alone) / sum(s for _, s in alone), "c8": together[0] / together[1]}

"""Which of llama.cpp's CPU flash-attention kernels keep a row's numbers independent of its call, and at what speed.

In one process, through llama.cpp's batch API, with a context made as localgem makes its own (``llama_batch``):
8 prompts of 30-1,200 tokens, each decoded greedily alone, then the 8 together, then alone again with its
prompt read in calls of 37 rows; the logits of every step are compared bit for bit. Then the speed of a fresh
~480- and ~1,900-token prompt (calls of 480 rows) and of a lone decode row ~1,900 cells in.

``flash`` (localgem's default: f16 K and V) reads rows as ``NativeModel`` does: every prompt call padded to at least
64 rows (filler rows after it, removed after), so llama.cpp reads every prompt row with its tiled kernel, and a lone
decode row past 256 cells given a companion row in a neighbouring stream, so llama.cpp does not split its cells
across threads. ``--pad64`` and ``--companion`` do either for the other modes. The switches ggml reads come from the
environment (``GGML_CPU_TILED_MM``, and those of a patched ggml given by ``LLAMA_CPP_LIB_PATH``). 2026-12-07, SmolLM2,
one run: ``flash`` 8 of 8 alone equal among 8 and 8 of 8 cut, prompts of ~480 and ~1,900 tokens at 289 and 243 tok/s,
a lone decode row 1,900 cells in at 31.2 tok/s; ``flash-q8k`` (the default before) 8 of 8 each, 249 and 158 tok/s,
44.1 tok/s. (Earlier that day a ggml patched to keep lone rows off the split kernel, ``GGML_FA_NO_SPLIT``, gave the
same invariance without companions, and lone rows at 37.5-40.3 tok/s.)

    python bench/attention_kernels.py --attention flash
    python bench/attention_kernels.py --attention fast --pad64 --companion
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

import llama_cpp as lc
import numpy as np
from llama_batch import ATTENTIONS, BATCH, SLOTS, LlamaBatch

from localgem.engines.llama.native import SPLIT_FROM_POSITION, TILE_ROWS
from localgem.models.registry import ModelRegistry
from localgem.settings import load_settings

WORDS = "the sea a city at night an old clock a mountain village the first snow a lighthouse river stones".split()
PROMPT_LENGTHS = (30, 700, 120, 900, 60, 550, 300, 1200)
STEPS = 24
CALL = 480  # prompt rows a call, as localgem reads a prompt while nothing else waits


def words(count: int, seed: int) -> str:
    return " ".join(np.random.default_rng(seed).choice(WORDS, count))


class Probe:
    def __init__(self, batch: LlamaBatch, pad64: bool, companion: bool) -> None:
        self.batch = batch
        self.pad64 = pad64
        self.companion = companion

    def step(self, rows: list[tuple[int, int, int]]) -> list[int]:
        """One decode step (a row per sequence, in sequence order): each row's index in the call."""
        if not (self.companion and len(rows) == 1 and rows[0][2] >= SPLIT_FROM_POSITION):
            self.batch._decode(rows, [True] * len(rows))
            return list(range(len(rows)))
        sequence, token, _ = rows[0]
        neighbour = sequence + 1 if sequence + 1 < SLOTS else sequence - 1
        at = lc.llama_memory_seq_pos_max(self.batch.memory, neighbour) + 1
        pair = sorted([rows[0], (neighbour, token, at)])
        self.batch._decode(pair, [r[0] == sequence for r in pair])
        lc.llama_memory_seq_rm(self.batch.memory, neighbour, at, -1)
        return [pair.index(rows[0])]

    def _last_logits(self, row: int) -> tuple[str, int]:
        logits = self.batch.logits(row)
        return hashlib.sha1(logits.tobytes()).hexdigest(), int(np.argmax(logits))

    def read(self, sequence: int, prompt: list[int], call: int) -> tuple[str, int]:
        """Reads ``prompt`` into ``sequence`` in calls of ``call`` rows: the last row's logits (digest, argmax)."""
        lc.llama_memory_seq_rm(self.batch.memory, sequence, -1, -1)
        found = ("", 0)
        for first in range(0, len(prompt), call):
            rows = [(sequence, token, first + i) for i, token in enumerate(prompt[first : first + call])]
            wanted = [position == len(prompt) - 1 for _, _, position in rows]
            fill = max(0, TILE_ROWS - len(rows)) if self.pad64 else 0
            end = rows[-1][2]
            filler = [(sequence, rows[-1][1], end + 1 + k) for k in range(fill)]
            self.batch._decode(rows + filler, wanted + [False] * fill)
            if fill:
                lc.llama_memory_seq_rm(self.batch.memory, sequence, end + 1, -1)
            if wanted[-1]:
                found = self._last_logits(len(rows) - 1)
        return found

    def generate(self, prompts: dict[int, list[int]], call: int = BATCH) -> dict[int, list[str]]:
        """Each prompt read on its own, then all decoded together greedily for STEPS steps: every step's logits."""
        seen: dict[int, list[str]] = {}
        pending: dict[int, tuple[int, int]] = {}
        for sequence, prompt in prompts.items():
            digest, token = self.read(sequence, prompt, call)
            seen[sequence], pending[sequence] = [digest], (token, len(prompt))
        for _ in range(STEPS):
            order = sorted(pending)
            rows = self.step([(s, *pending[s]) for s in order])
            for row, sequence in zip(rows, order, strict=True):
                digest, token = self._last_logits(row)
                seen[sequence].append(digest)
                pending[sequence] = (token, pending[sequence][1] + 1)
        return seen

    def prompt_speed(self, prompt: list[int]) -> float:
        started = time.perf_counter()
        self.read(0, prompt, CALL)
        return len(prompt) / (time.perf_counter() - started)

    def deep_decode_speed(self, prompt: list[int], steps: int = 32) -> float:
        _, token = self.read(0, prompt, CALL)
        started = time.perf_counter()
        for position in range(len(prompt), len(prompt) + steps):
            (row,) = self.step([(0, token, position)])
            token = self._last_logits(row)[1]
        return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--attention", default="flash", choices=sorted(ATTENTIONS))
    parser.add_argument("--pad64", action="store_true", help="pad every prompt call to at least 64 rows")
    parser.add_argument(
        "--companion", action="store_true", help="a lone decode row 256 cells or more in gets a neighbour stream's row"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        settings = load_settings(environ={}, data_dir=Path(data_dir))
        path = ModelRegistry(settings).resolve(args.model, "bench").weights(Path(data_dir))
        batch = LlamaBatch(path, args.attention)
    tiled = ATTENTIONS[args.attention] == (True, True, "f16")  # as localgem reads rows in its default mode
    probe = Probe(batch, args.pad64 or tiled, args.companion or tiled)
    try:
        prompts = {i: batch.tokens(words(n, i)) for i, n in enumerate(PROMPT_LENGTHS)}
        alone = {}
        for sequence, prompt in prompts.items():
            alone.update(probe.generate({sequence: prompt}))
        together = probe.generate(prompts)
        cut = {}
        for sequence, prompt in prompts.items():
            cut.update(probe.generate({sequence: prompt}, call=37))
        long = batch.tokens(words(1900, 99))
        short = sorted(probe.prompt_speed(long[:CALL]) for _ in range(3))[1]
        whole = sorted(probe.prompt_speed(long) for _ in range(3))[1]
        deep = min(probe.deep_decode_speed(long) for _ in range(2))
    finally:
        batch.close()
    switches = {k: v for k, v in os.environ.items() if k.startswith("GGML_") or k == "LLAMA_CPP_LIB_PATH"}
    shaped = ", prompt calls padded to 64 rows" if probe.pad64 else ""
    shaped += ", lone decode rows with a companion" if probe.companion else ""
    print(f"{args.model}, {args.attention}{shaped}, {switches}")
    print(f"  same logits at every step: alone and among 8 {sum(alone[s] == together[s] for s in alone)}/8, ", end="")
    print(f"read whole and in calls of 37 rows {sum(alone[s] == cut[s] for s in alone)}/8")
    print(f"  prompt of {CALL} tokens {short:.0f} tok/s, of {len(long)} {whole:.0f} tok/s; ", end="")
    print(f"a lone decode row {len(long)} cells in {deep:.1f} tok/s")


if __name__ == "__main__":
    main()

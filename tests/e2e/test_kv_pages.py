"""The KV cache is backed as slots fill, not whole from the start (SmolLM2 on real llama.cpp).

llama.cpp writes zeros over a new context's whole KV cache; ``NativeModel`` hands those zero pages back to the
kernel (localgem.zeroed_pages). Here two contexts of 4 slots × 4,096 cells, one handing back and one keeping
its cache, must give bit-identical logits for the same prompt, while the first holds only the pages its cells
were written to. Measured in a fresh interpreter: in the long-lived test process, other threads (a session's
server, unloading an idle model) free memory between the snapshots, and glibc may serve blocks from free heap.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from localgem.engines.llama.decoder import BatchItem
from localgem.engines.llama.native import NativeModel
from localgem.models.packaged import smollm2_135m_instruct
from tests.fresh_interpreter import run_fresh

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/status and madvise")

MIB = 1 << 20
SLOTS, CELLS = 4, 4096
#: SmolLM2-135M's K and V as f16 (NativeModel's defaults): 30 layers × 192 numbers each (22.5 KiB a cell), in a
#: stream per slot and one more (for companion rows, see ``NativeModel._companions``).
KV_BYTES = (SLOTS + 1) * CELLS * 30 * 192 * (2 + 2)


def resident() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def context(weights: Path, hand_back: bool) -> tuple[NativeModel, int]:
    """A context of SLOTS × CELLS, and the resident bytes its making added."""
    before = resident()
    model = NativeModel(
        weights, slots=SLOTS, sequence_length=CELLS, batch_size=512, threads=None, hand_back_kv_pages=hand_back
    )
    return model, resident() - before


def prompt_logits(model: NativeModel, slot: int, tokens: list[int]) -> np.ndarray:
    model.clear()
    assert model.decode([BatchItem(slot, t, i, i == len(tokens) - 1) for i, t in enumerate(tokens)])
    return model.logits(len(tokens) - 1).copy()


def measure(weights: Path) -> dict:
    """What the tests check, measured in this (fresh) process."""
    kept, kept_bytes = context(weights, hand_back=False)  # loaded first: the model's own pages land on it
    handed, handed_bytes = context(weights, hand_back=True)
    text = " ".join(f"Line {n}: the river runs past the old mill and on to the sea." for n in range(28))
    tokens = kept.tokenize(text, add_bos=kept.info.add_bos)
    before = resident()
    expected = prompt_logits(kept, SLOTS - 1, tokens)
    kept_growth = resident() - before  # the compute buffers' first touch
    before = resident()
    same_in_last_slot = bool(np.array_equal(prompt_logits(handed, SLOTS - 1, tokens), expected))
    handed_growth = resident() - before - kept_growth
    # Next to a slot the other context has filled, the same (ruling out a page read back stale).
    same_in_first_slot = bool(np.array_equal(prompt_logits(handed, 0, tokens), prompt_logits(kept, 0, tokens)))
    result = {
        "kept_handed_back": kept.handed_back,
        "handed_back": handed.handed_back,
        "kept_bytes": kept_bytes,
        "handed_bytes": handed_bytes,
        "tokens": len(tokens),
        "handed_growth": handed_growth,
        "same_in_last_slot": same_in_last_slot,
        "same_in_first_slot": same_in_first_slot,
    }
    kept.close()
    handed.close()
    return result


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict:
    weights = smollm2_135m_instruct(tmp_path_factory.mktemp("models"))
    code = f"import json, pathlib, {__name__} as m; print(json.dumps(m.measure(pathlib.Path({str(weights)!r}))))"
    return json.loads(run_fresh(code).strip().splitlines()[-1])


def test_a_new_context_holds_none_of_its_kv_cache(measured: dict) -> None:
    assert measured["kept_handed_back"] == 0
    assert measured["handed_back"] >= 0.97 * KV_BYTES
    assert measured["kept_bytes"] >= 0.97 * KV_BYTES  # llama.cpp backs the whole cache from the start
    assert measured["handed_bytes"] <= measured["kept_bytes"] - 0.9 * KV_BYTES


def test_cells_written_are_backed_again_and_read_the_same(measured: dict) -> None:
    assert 380 <= measured["tokens"] <= 512
    assert measured["same_in_last_slot"]
    # ~450 cells of one slot: their K and V rows (768 bytes a cell a layer), ~10 MiB with the pages they share
    # with the next cells, against the 450 MiB the whole cache holds.
    assert measured["handed_growth"] <= 45 * MIB, measured["handed_growth"] / MIB
    assert measured["same_in_first_slot"]

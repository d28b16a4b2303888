"""The build of llama.cpp this process runs: KV state that one build wrote is not read by another (its layout
changes between versions, as ``LLAMA_STATE_SEQ_VERSION`` 3 → 4 did, and its rounding with the kernels); and the
switches it reads once per process."""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from pathlib import Path

#: ggml reads this switch once per process, at its first matrix product: "0" turns its tiled K-quant kernel off.
TILED_MATMUL_SWITCH = "GGML_CPU_TILED_MM"
_matmul_choice: dict[str, bool] = {}
_matmul_choice_lock = threading.Lock()


def choose_matmul_kernels(batch_invariant: bool) -> bool:
    """Where rows must be invariant, llama.cpp multiplies K-quant weights (Gemma 3's and Qwen's Q4_K and Q6_K) by its
    per-row dot products whatever the rows a call holds: its repacked layout (Q4_K on AVX2, four rows and more at
    once) and its tiled kernel (eight rows and more) round otherwise. Repacking is a model's parameter
    (``use_extra_bufts``); the tiled kernel is a switch ggml reads at the process's first matrix product, so the first
    choice made in a process (``create_app``'s, from the settings, before any model computes) holds for all of it.
    True where the switch is as ``batch_invariant`` needs it."""
    with _matmul_choice_lock:
        first = _matmul_choice.setdefault("batch_invariant", batch_invariant)
        if first:
            os.environ[TILED_MATMUL_SWITCH] = "0"
    return first or not batch_invariant


def loaded_llama_folder() -> Path:
    """The folder llama-cpp-python's bindings load libllama (and libggml) from: ``LLAMA_CPP_LIB_PATH`` where set
    (``bench/throughput.py --llama-lib``), else their own."""
    import llama_cpp

    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    return Path(override) if override else Path(llama_cpp.__file__).parent / "lib"


@functools.cache
def llama_build() -> str:
    return build_of(loaded_llama_folder())


def build_of(folder: Path) -> str:
    """Names a build by a digest of the libllama and libggml files in ``folder``."""
    digest = hashlib.sha256()
    for library in sorted(folder.iterdir()):
        if library.name.startswith(("libllama.", "libggml")) and library.is_file() and not library.is_symlink():
            digest.update(library.name.encode() + b"\0" + library.read_bytes())
    return digest.hexdigest()[:16]

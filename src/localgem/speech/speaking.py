"""Text → speech as Google sends it: 16-bit mono PCM at 24 kHz, sentence by sentence.

Synthesis runs in worker threads; each Piper voice loads on first use."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from localgem import errors
from localgem.lazy_model import LazyModel
from localgem.speech.voices import DEFAULT_VOICE, GOOGLE_VOICES, Voice, voice_table

OUTPUT_RATE = 24000
OUTPUT_MIME = f"audio/L16;codec=pcm;rate={OUTPUT_RATE}"  # generateContent (Google's TTS models)
LIVE_OUTPUT_MIME = f"audio/pcm;rate={OUTPUT_RATE}"  # the Live API
#: Google counts audio as 32 tokens a second (input); localgem counts its output audio the same way.
AUDIO_TOKENS_PER_SECOND = 32


@dataclass(frozen=True)
class Line:
    voice: Voice
    text: str


class Speaking:
    def __init__(self, installed: list[str], load: Callable[[str], object]) -> None:
        self._installed = list(installed)
        self._load = load
        self._table = voice_table(self._installed) if self._installed else {}
        self._speakers: dict[str, LazyModel[Any]] = {}

    @property
    def available(self) -> bool:
        """Voices are configured and Piper is installed (it is the ``speech`` extra: GPL-3.0)."""
        return bool(self._installed) and importlib.util.find_spec("piper") is not None

    def names(self) -> list[str]:
        installed = sorted({v.name for v in self._table.values()} - set(GOOGLE_VOICES))
        return list(GOOGLE_VOICES) + installed

    def voice(self, name: str | None, where: str) -> Voice:
        if not self._installed:
            raise errors.FailedPrecondition("Speech output needs a voice: set voices (see the README).")
        voice = self._table.get((name or DEFAULT_VOICE).lower())
        if voice is None:
            raise errors.invalid_field(
                where, f"Voice {name!r} is not available. The voices are: {', '.join(self.names())}."
            )
        return voice

    async def _speaker(self, installed: str):  # -> engines.speech.piper.PiperSpeaker
        if installed not in self._speakers:
            self._speakers[installed] = LazyModel(functools.partial(self._load, installed))
        return await self._speakers[installed].get()

    async def warm(self, voice: Voice) -> None:
        """Load a voice before its first sentence is due."""
        await self._speaker(voice.installed)

    async def check_language(self, code: str | None, voices: list[Voice], where: str) -> None:
        if not code:
            return
        for voice in voices:
            speaker = await self._speaker(voice.installed)
            spoken = _bcp47(getattr(speaker, "language", ""))
            if spoken and spoken.split("-")[0].lower() != code.split("-")[0].lower():
                raise errors.invalid_field(
                    where, f"languageCode {code!r} is not spoken by the voice {voice.name} ({spoken})."
                )

    async def speak(self, text: str, voice: Voice) -> AsyncIterator[bytes]:
        """PCM16 at 24 kHz, one piece per sentence, each ready as soon as it is synthesized."""
        from localgem.engines.speech.audio import Resampler

        if not text.strip():
            return
        speaker = await self._speaker(voice.installed)
        # Piper speaks slower by the pitch factor; reading it as if recorded faster raises the pitch back
        # to the same length.
        resampler = Resampler(round(speaker.sample_rate * voice.pitch), OUTPUT_RATE)
        sentences = await speaker.thread.run(
            lambda: list(speaker.sentences(text, length_scale=voice.pitch if voice.pitch != 1.0 else None))
        )
        for i, samples in enumerate(sentences):
            pcm = resampler.push(samples)
            if i == len(sentences) - 1:
                pcm += resampler.flush()
            if pcm:
                yield pcm

    async def speak_lines(self, lines: list[Line]) -> AsyncIterator[bytes]:
        for line in lines:
            async for pcm in self.speak(line.text, line.voice):
                yield pcm


def audio_tokens(pcm_bytes: int) -> int:
    seconds = pcm_bytes / 2 / OUTPUT_RATE
    return max(1, round(seconds * AUDIO_TOKENS_PER_SECOND)) if pcm_bytes else 0


def _bcp47(espeak: str) -> str:
    """espeak-ng's 'en-us' → 'en-US'."""
    head, _, tail = espeak.partition("-")
    return f"{head}-{tail.upper()}" if tail else head

"""Text → speech as Google sends it: 16-bit mono PCM at 24 kHz, sentence by sentence.

Synthesis runs in worker threads; each Piper voice loads on first use."""

from __future__ import annotations

import asyncio
import importlib.util
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from localgem import errors
from localgem.speech.voices import DEFAULT_VOICE, GOOGLE_VOICES, Voice, voice_table

OUTPUT_RATE = 24000
OUTPUT_MIME = f"audio/L16;codec=pcm;rate={OUTPUT_RATE}"  # generateContent (Google's TTS models)
LIVE_OUTPUT_MIME = f"audio/pcm;rate={OUTPUT_RATE}"  # the Live API
#: Google counts audio as 32 tokens a second (input); localgem counts its output audio the same way.
AUDIO_TOKENS_PER_SECOND = 32
_SPEAKER_LINE = re.compile(r"^\s*([^:\n]{1,60}?)\s*:\s*(.*)$")


@dataclass(frozen=True)
class Line:
    voice: Voice
    text: str


class Speaking:
    def __init__(self, installed: list[str], load: Callable[[str], object]) -> None:
        self._installed = list(installed)
        self._load = load
        self._table = voice_table(self._installed) if self._installed else {}
        self._speakers: dict[str, object] = {}
        self._loading = asyncio.Lock()

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

    def languages(self) -> set[str]:
        """Language codes the installed voices speak ('en-US'), once they are loaded; empty before."""
        return {_bcp47(getattr(s, "language", "")) for s in self._speakers.values()} - {""}

    async def _speaker(self, installed: str):  # -> engines.speech.piper.PiperSpeaker
        async with self._loading:
            if installed not in self._speakers:
                self._speakers[installed] = await asyncio.to_thread(self._load, installed)
        return self._speakers[installed]

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
        sentences = await asyncio.to_thread(
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


def speaker_lines(text: str, speakers: dict[str, Voice], default: Voice) -> list[Line]:
    """A dialogue's lines ("Joe: Hi.") → each spoken by its speaker's voice; other lines keep the last."""
    known = {name.lower(): voice for name, voice in speakers.items()}
    lines: list[Line] = []
    current = default
    for raw in text.splitlines():
        match = _SPEAKER_LINE.match(raw)
        if match and match.group(1).lower() in known:
            current = known[match.group(1).lower()]
            raw = match.group(2)
        if raw.strip():
            if lines and lines[-1].voice == current:
                lines[-1] = Line(current, lines[-1].text + "\n" + raw)
            else:
                lines.append(Line(current, raw))
    return lines


def audio_tokens(pcm_bytes: int) -> int:
    seconds = pcm_bytes / 2 / OUTPUT_RATE
    return max(1, round(seconds * AUDIO_TOKENS_PER_SECOND)) if pcm_bytes else 0


def _bcp47(espeak: str) -> str:
    """espeak-ng's 'en-us' → 'en-US'."""
    head, _, tail = espeak.partition("-")
    return f"{head}-{tail.upper()}" if tail else head

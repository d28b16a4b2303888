"""Speech-to-text on faster-whisper (CTranslate2): a Whisper model folder → text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localgem.engines.speech.audio import SPEECH_RATE
from localgem.one_thread import OneThread


@dataclass(frozen=True)
class Transcript:
    text: str
    seconds: float  # of audio heard
    language: str | None = None


class Transcriber:
    """One Whisper model. Call ``transcribe`` through ``thread``: one call at a time, each using every
    CPU thread it was given."""

    def __init__(self, path: Path, *, threads: int, compute_type: str = "int8") -> None:
        from faster_whisper import WhisperModel

        self.path = path
        self._model = WhisperModel(str(path), device="cpu", compute_type=compute_type, cpu_threads=threads)
        self.multilingual = self._model.model.is_multilingual
        self.thread = OneThread("whisper")

    def transcribe(
        self, samples: np.ndarray, *, language: str | None = None, vad: bool = True, beam_size: int = 1
    ) -> Transcript:
        """``samples``: mono float32 at 16 kHz. ``vad``: skip what Silero hears no speech in (silence
        then gives an empty transcript, not Whisper's hallucinations). ``beam_size``: 1 (greedy) is what
        serving uses, for its latency; a wider beam hears unclear speech better, more slowly."""
        seconds = samples.size / SPEECH_RATE
        if samples.size < SPEECH_RATE // 10:
            return Transcript("", seconds, language)
        if not self.multilingual:
            language = "en"
        segments, info = self._model.transcribe(
            samples,
            language=language,
            beam_size=beam_size,
            vad_filter=vad,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        text = "".join(segment.text for segment in segments).strip()
        return Transcript(text, seconds, info.language)

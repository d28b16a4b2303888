"""Text-to-speech on Piper (ONNX voices): text → 16-bit PCM, sentence by sentence."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np


class PiperSpeaker:
    """One Piper voice (``voice.onnx`` beside ``voice.onnx.json``)."""

    def __init__(self, path: Path) -> None:
        from piper import PiperVoice

        self.path = path
        self._voice = PiperVoice.load(str(path))
        self.sample_rate: int = self._voice.config.sample_rate
        self.language: str = getattr(self._voice.config, "espeak_voice", "") or ""
        self._lock = threading.Lock()

    def sentences(self, text: str, *, length_scale: float | None = None) -> Iterator[np.ndarray]:
        """int16 samples at ``sample_rate``, one array per sentence Piper finds in ``text``."""
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=length_scale)
        with self._lock:
            chunks = list(self._voice.synthesize(text, syn_config=config))
        for chunk in chunks:
            yield chunk.audio_int16_array.reshape(-1)

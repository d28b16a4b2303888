"""Text-to-speech on Piper (ONNX voices): text → 16-bit PCM, sentence by sentence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from localgem.one_thread import OneThread


class PiperSpeaker:
    """One Piper voice (``voice.onnx`` beside ``voice.onnx.json``); call ``sentences`` through ``thread``."""

    def __init__(self, path: Path) -> None:
        from piper import PiperVoice

        self.path = path
        self._voice = PiperVoice.load(str(path))
        self.sample_rate: int = self._voice.config.sample_rate
        self.language: str = getattr(self._voice.config, "espeak_voice", "") or ""
        self.thread = OneThread("piper")

    def sentences(self, text: str, *, length_scale: float | None = None, varied: bool = True) -> Iterator[np.ndarray]:
        """int16 samples at ``sample_rate``, one array per sentence Piper finds in ``text``. ``varied``:
        Piper's random noise makes each reading a little different; without it the same text always
        gives the same samples."""
        from piper import SynthesisConfig

        quiet = None if varied else 0.0
        config = SynthesisConfig(length_scale=length_scale, noise_scale=quiet, noise_w_scale=quiet)
        for chunk in self._voice.synthesize(text, syn_config=config):
            yield chunk.audio_int16_array.reshape(-1)

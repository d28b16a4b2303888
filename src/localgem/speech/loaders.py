"""Settings → the speech models, loaded when first needed (never at import or app creation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from localgem import errors
from localgem.speech.packaged import locate_speech

if TYPE_CHECKING:
    from localgem.engines.speech.piper import PiperSpeaker
    from localgem.engines.speech.whisper import Transcriber
    from localgem.settings import Settings


def transcriber_loader(settings: Settings) -> Callable[[], Transcriber] | None:
    if not settings.speech_to_text:
        return None
    name = settings.speech_to_text

    def load() -> Transcriber:
        try:
            from localgem.engines.speech.whisper import Transcriber
        except ImportError as exc:
            raise errors.FailedPrecondition(f"Audio input needs faster-whisper: {exc}.") from None
        return Transcriber(locate_speech(name, settings.data_dir), threads=settings.speech_threads)

    return load


def voice_loader(settings: Settings) -> Callable[[str], PiperSpeaker]:
    def load(name: str) -> PiperSpeaker:
        try:
            from localgem.engines.speech.piper import PiperSpeaker
        except ImportError as exc:
            raise errors.FailedPrecondition(
                f"Speech output needs piper-tts (pip install 'localgem[speech]'): {exc}."
            ) from None
        return PiperSpeaker(locate_speech(name, settings.data_dir))

    return load

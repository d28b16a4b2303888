"""What a text model reads in place of media it cannot take: audio's transcript (speech/hearing.py) and
an image's text read by OCR (vision/reading.py), each marked as such. One place decides which medium is
read how, for inline parts (generation/media.py) and stored files (files/processing.py, prompt_text.py)."""

from __future__ import annotations

from dataclasses import dataclass

from localgem.speech.hearing import AUDIO, Hearing, is_audio, is_video
from localgem.vision.reading import IMAGE, Reading, is_image


@dataclass(frozen=True)
class Perceived:
    modality: str  # AUDIO (a transcript, also of a video's sound) or IMAGE (text read by OCR)
    text: str  # what the model reads in the part's place


@dataclass(frozen=True)
class Senses:
    hearing: Hearing | None = None
    reading: Reading | None = None

    def modality(self, mime: str | None) -> str | None:
        """The modality this server reads ``mime`` as (None: not a medium it reads)."""
        if self.hearing is not None and (is_audio(mime) or is_video(mime)):
            return AUDIO
        if self.reading is not None and is_image(mime):
            return IMAGE
        return None

    async def perceive(self, data: bytes, mime: str, where: str, *, inline: bool = True) -> Perceived:
        modality = self.modality(mime)
        if modality == AUDIO:
            assert self.hearing is not None
            return Perceived(AUDIO, (await self.hearing.hear(data, mime, where, inline=inline)).prompt_text())
        if modality == IMAGE:
            assert self.reading is not None
            return Perceived(IMAGE, (await self.reading.read(data, mime, where)).prompt_text())
        raise ValueError(f"{mime} is not a medium this server reads")

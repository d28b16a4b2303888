"""What a model reads in place of media: for a text model, audio's transcript (speech/hearing.py) and an
image's text read by OCR (vision/reading.py), each marked as such; for a model that sees (a vision model),
the pictures themselves (vision/seeing.py), a video's frames beside its transcript. One place decides
which medium is read how, for inline parts (generation/media.py) and stored files (files/processing.py,
prompt_text.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from localgem import errors
from localgem.engines.base import PICTURE_MARKER, Picture
from localgem.speech.hearing import AUDIO, Hearing, is_audio, is_video
from localgem.vision import seeing
from localgem.vision.reading import IMAGE, Reading, is_image

VIDEO = "VIDEO"
#: A video is seen as at most this many frames.
MAX_VIDEO_FRAMES = 64


@dataclass(frozen=True)
class Perceived:
    modality: str  # AUDIO (a transcript, also of a video's sound), IMAGE (OCR text, or a picture), VIDEO
    text: str  # what the model reads in the part's place (PICTURE_MARKER where a picture goes)
    pictures: tuple[Picture, ...] = ()  # for a model that sees: one per marker in ``text``


@dataclass(frozen=True)
class Senses:
    hearing: Hearing | None = None
    reading: Reading | None = None

    def modality(self, mime: str | None) -> str | None:
        """The modality this server reads ``mime`` as, for a text model (None: not a medium it reads)."""
        if self.hearing is not None and (is_audio(mime) or is_video(mime)):
            return AUDIO
        if self.reading is not None and is_image(mime):
            return IMAGE
        return None

    @staticmethod
    def sees(mime: str | None) -> bool:
        """A medium a vision model sees: images, and the frames of videos."""
        return is_image(mime) or is_video(mime)

    async def perceive(
        self, data: bytes, mime: str, where: str, *, inline: bool = True, vision: bool = False
    ) -> Perceived:
        if vision and is_image(mime):
            picture = await seeing.picture(data, mime, where)
            return Perceived(IMAGE, PICTURE_MARKER, (picture,))
        if vision and is_video(mime):
            return await self._watch(data, mime, where, inline)
        modality = self.modality(mime)
        if modality == AUDIO:
            assert self.hearing is not None
            return Perceived(AUDIO, (await self.hearing.hear(data, mime, where, inline=inline)).prompt_text())
        if modality == IMAGE:
            assert self.reading is not None
            return Perceived(IMAGE, (await self.reading.read(data, mime, where)).prompt_text())
        raise ValueError(f"{mime} is not a medium this server reads")

    async def _watch(self, data: bytes, mime: str, where: str, inline: bool) -> Perceived:
        from localgem.engines.speech.audio import AudioError, probe

        try:
            found = await asyncio.to_thread(probe, data)
            frames = await asyncio.to_thread(seeing.video_frames, data, MAX_VIDEO_FRAMES)
        except AudioError as exc:
            raise errors.invalid_field(where, f"{where}: {exc}.") from None
        heard = None
        if found.has_audio and self.hearing is not None and self.hearing.available:
            heard = (await self.hearing.hear(data, mime, where, inline=inline)).prompt_text()
        if not frames and heard is None:
            raise errors.invalid_field(where, f"{where}: the video has neither frames nor sound to read.")
        return Perceived(VIDEO, seeing.video_text(frames, heard), tuple(picture for _, picture in frames))

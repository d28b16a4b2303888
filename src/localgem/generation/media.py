"""Parts a text model cannot read as they are → text parts it can: a stored file's text (``fileData``),
audio's transcript, an image's text read by OCR (inline or stored). What each piece was is kept, so
usage reports it by modality."""

from __future__ import annotations

from localgem import errors
from localgem.files.prompt_text import FileText
from localgem.generation.conversation import DATA_FIELDS
from localgem.perception import Perceived, Senses
from localgem.speech.hearing import is_audio, is_video
from localgem.types.content import Content, Part
from localgem.vision.reading import is_image


class MediaReader:
    def __init__(self, files: FileText | None = None, senses: Senses | None = None) -> None:
        self._files = files
        self._senses = senses or Senses()

    async def read(
        self, project: str, contents: list[Content], prefix: str = "", *, vision: bool = False
    ) -> tuple[list[Content], list[Perceived]]:
        """``contents`` with every fileData part, and every audio, video or image inlineData part, replaced
        by text. For a model that sees (``vision``), images and video frames become pictures: the text
        then holds PICTURE_MARKER where each goes, and the Perceived pieces carry them, in order."""
        media: list[Perceived] = []
        read = []
        for i, content in enumerate(contents):
            parts = content.parts or []
            if not any(self._replaced(part) for part in parts):
                read.append(content)
                continue
            new_parts = []
            for j, part in enumerate(parts):
                where = f"{prefix}contents[{i}].parts[{j}]"
                replaced = self._replaced(part)
                new_parts.append(await self._read(project, part, where, media, vision) if replaced else part)
            read.append(content.model_copy(update={"parts": new_parts}))
        return read, media

    async def data(self, project: str, part: Part, where: str) -> tuple[bytes, str] | None:
        """The bytes and MIME type of an inlineData or fileData part (None: a part of another kind)."""
        if part.inline_data is not None:
            return part.inline_data.data or b"", part.inline_data.mime_type or "application/octet-stream"
        if part.file_data is None or not part.file_data.file_uri:
            return None
        if self._files is None:
            raise errors.not_supported(f"{where}.file_data", "Files")
        return await self._files.data(project, part.file_data.file_uri, part.file_data.mime_type, where)

    @staticmethod
    def _replaced(part: Part) -> bool:
        if _other_data(part):
            return False  # refused later, with the oneof message
        if part.file_data is not None:
            return True
        blob = part.inline_data
        return blob is not None and (is_audio(blob.mime_type) or is_video(blob.mime_type) or is_image(blob.mime_type))

    async def _read(self, project: str, part: Part, where: str, media: list[Perceived], vision: bool) -> Part:
        if part.file_data is not None:
            data = part.file_data
            if not data.file_uri:
                raise errors.invalid_field(f"{where}.file_data.file_uri", f"{where}.file_data.file_uri is required.")
            if self._files is None:
                raise errors.not_supported(f"{where}.file_data", "Files")
            found = await self._files.prompt_text(project, data.file_uri, data.mime_type, where, vision=vision)
            if isinstance(found, Perceived):
                media.append(found)
                return Part(text=found.text)
            text, mime = found
            if (modality := self._senses.modality(mime)) is not None:
                media.append(Perceived(modality, text))
            return Part(text=text)
        blob = part.inline_data
        assert blob is not None
        seen = vision and self._senses.sees(blob.mime_type)
        if not seen and self._senses.modality(blob.mime_type) is None:
            kind = "Image input" if is_image(blob.mime_type) else "Audio and video input"
            raise errors.not_supported(f"{where}.inline_data", kind)
        perceived = await self._senses.perceive(
            blob.data or b"", blob.mime_type or "", f"{where}.inline_data", vision=vision
        )
        media.append(perceived)
        return Part(text=perceived.text)


def _other_data(part: Part) -> bool:
    """A part with two data fields is left for conversation.py to refuse with Google's oneof message."""
    return sum(getattr(part, name) is not None for name in DATA_FIELDS) > 1

"""An image → what a text-only model reads in its place: the text in it (OCR), with its type and size.

Decoding and OCR run in worker threads; the OCR models load on first use; the same bytes are read once."""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localgem import errors
from localgem.files.documents import base_type
from localgem.lazy_model import LazyModel

IMAGE = "IMAGE"
IMAGE_TYPES = {
    "image/png",
    "image/jpeg",
    "image/jpg",
    "image/webp",
    "image/heic",
    "image/heif",
    "image/gif",
    "image/bmp",
}
#: OCR reads at most this many pixels on the longer side (larger images are scaled down first).
_MAX_SIDE = 2048
_MAX_PIXELS = 100_000_000
_CACHE_ENTRIES = 64


def is_image(mime: str | None) -> bool:
    """A raster image OCR can read (SVG, being XML, stays text)."""
    return base_type(mime) in IMAGE_TYPES


@dataclass(frozen=True)
class Seen:
    text: str  # what OCR read
    width: int
    height: int
    mime_type: str

    def prompt_text(self) -> str:
        read = self.text or "(no text found)"
        return (
            f"[Text read by OCR from an image ({base_type(self.mime_type)}, {self.width}x{self.height} pixels); "
            f"the image itself was not seen]\n{read}\n[End of text read from the image]"
        )


class Reading:
    """``load`` builds the OCR reader (engines.ocr.TextReader) when first needed; None: images are refused."""

    def __init__(self, load: Callable[[], object] | None) -> None:
        self._load = load
        self._reader: LazyModel[Any] | None = LazyModel(load) if load is not None else None
        self._seen: OrderedDict[str, Seen] = OrderedDict()

    async def read(self, data: bytes, mime: str, where: str) -> Seen:
        if self._load is None:
            raise errors.invalid_field(where, f"{where}: images cannot be read here (no vision or OCR model).")
        if base_type(mime) not in IMAGE_TYPES:
            raise errors.invalid_field(
                where,
                f"Unsupported image type {base_type(mime)!r} at {where}: use one of {', '.join(sorted(IMAGE_TYPES))}.",
            )
        key = (await asyncio.to_thread(hashlib.sha256, data)).hexdigest()  # hashlib lets go of the GIL
        if (seen := self._seen.get(key)) is not None:
            self._seen.move_to_end(key)
            return seen
        assert self._reader is not None
        reader = await self._reader.get()
        try:
            rgb, width, height = await asyncio.to_thread(decode_image, data)
        except ValueError as exc:
            raise errors.invalid_field(where, f"{where}: declared {base_type(mime)}, but {exc}.") from None
        text = await reader.thread.run(reader.read, rgb)
        seen = Seen(text, width, height, mime)
        self._seen[key] = seen
        if len(self._seen) > _CACHE_ENTRIES:
            self._seen.popitem(last=False)
        return seen


def decode_image(data: bytes, max_side: int = _MAX_SIDE):
    """Image bytes → (RGB array scaled to at most ``max_side``, original width, height); ValueError if unreadable."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    _register_heif()
    too_big = None
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > _MAX_PIXELS:
                too_big = f"it is {width}x{height} pixels, more than the {_MAX_PIXELS} read here"
            else:
                image.thumbnail((max_side, max_side))
                rgb = np.asarray(image.convert("RGB"))
    # Pillow's decoders raise many kinds of error on hostile bytes; every one means "not an image".
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        EOFError,
        TypeError,
        ValueError,
        IndexError,
        struct.error,
        Image.DecompressionBombError,
    ) as exc:
        raise ValueError(f"not a readable image ({exc})") from None
    if too_big:
        raise ValueError(too_big)
    return rgb, width, height


_heif_registered = False


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
        except ImportError:  # HEIC/HEIF images are then unreadable, with a clear 400
            pass
        _heif_registered = True


def reader_loader() -> Callable[[], object]:
    def load():
        from localgem.engines.ocr import TextReader

        return TextReader()

    return load

"""Test images made here with Pillow: text on a plain background, in every format the API takes."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/heic": "HEIF", "image/heif": "HEIF"}


def text_image(lines: list[str], mime: str = "image/png", size: tuple[int, int] = (720, 240)) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for i, line in enumerate(lines):
        draw.text((24, 30 + 70 * i), line, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, FORMATS[mime], **({"quality": 95} if mime != "image/png" else {}))
    return buffer.getvalue()

"""Live video (``realtimeInput.video``): the frames a vision model sees with the user's next turn.

Google's Live API takes video at one frame a second; so does localgem: a frame that comes within a
second of the last one kept replaces it. The frames since the last turn (the latest ``MAX_FRAMES``)
go into that turn as image parts, before its text, where the generation pipeline gives them to the
model like any other image.
"""

from __future__ import annotations

import time
from collections import deque

from pydantic.alias_generators import to_camel

from localgem import errors
from localgem.types.content import Blob, Part
from localgem.vision.reading import IMAGE_TYPES, is_image

MAX_FRAMES = 8
FRAME_SECONDS = 1.0


class Frames:
    def __init__(self, sees: bool, clock=time.monotonic) -> None:
        self._sees = sees
        self._clock = clock
        self._kept: deque[tuple[float, Blob]] = deque(maxlen=MAX_FRAMES)

    def add(self, blob: Blob, where: str) -> None:
        if not self._sees:
            raise errors.invalid_field(
                where, f"{to_camel(where)}: video frames cannot be seen here: the session's model has no vision."
            )
        if not is_image(blob.mime_type) or not blob.data:
            raise errors.invalid_field(
                where,
                f"{to_camel(where)}: a video frame is an image ({', '.join(sorted(IMAGE_TYPES))}), "
                f"not {blob.mime_type!r}.",
            )
        now = self._clock()
        if self._kept and now - self._kept[-1][0] < FRAME_SECONDS:
            self._kept[-1] = (self._kept[-1][0], blob)  # the same second: the newer frame
        else:
            self._kept.append((now, blob))

    def take(self) -> list[Part]:
        """The frames since the last turn, as image parts (and none are left)."""
        parts = [Part(inline_data=blob) for _, blob in self._kept]
        self._kept.clear()
        return parts

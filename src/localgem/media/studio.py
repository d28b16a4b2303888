"""The image worker: every image drawn (``predict``, Gemini's IMAGE output) runs here, on threads of its own with
a queue of its own — never on the event loop, and never more than ``concurrency`` at a time (one by default: a
drawing uses every core). A caller that leaves (its client disconnected) stops its drawing at the next denoising
step, which frees the worker; a full queue is 503 UNAVAILABLE."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from localgem import errors
from localgem.engines.diffusion.pipelines import CannotEdit, Drawing, ImagePipeline, Interrupted
from localgem.engines.diffusion.sizes import native_side
from localgem.lazy_model import LazyModel
from localgem.models.registry import ModelEntry
from localgem.one_thread import in_a_thread_of_its_own


class Studio:
    def __init__(
        self, load: Callable[[ModelEntry], ImagePipeline], data_dir: Path, *, concurrency: int = 1, queue: int = 8
    ) -> None:
        self._load = load
        self._data_dir = data_dir
        self._concurrency = concurrency
        self._queue = queue
        self._pipelines: dict[str, LazyModel[ImagePipeline]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._admitted = 0

    def side(self, entry: ModelEntry) -> int:
        """The side of a square image the model draws by default (its config's, else its pipeline's)."""
        return entry.config.image_side or native_side(entry.weights(self._data_dir))

    async def loaded(self, entry: ModelEntry) -> ImagePipeline:
        lazy = self._pipelines.get(entry.id)
        if lazy is None:
            lazy = self._pipelines[entry.id] = LazyModel(lambda: self._load(entry))
        try:
            return await lazy.get()
        except errors.ApiError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a folder that is not a pipeline diffusers loads
            raise errors.FailedPrecondition(f"{entry.name} could not be loaded: {exc}") from None

    async def draw(self, entry: ModelEntry, job: Drawing) -> list[bytes]:
        """The images of ``job``, in order; 503 if the worker's queue is full."""
        if self._admitted >= self._concurrency + self._queue:
            raise errors.Unavailable(
                f"The image worker is busy ({self._admitted} images are being drawn or waiting); try again later."
            )
        self._admitted += 1
        try:
            pipeline = await self.loaded(entry)
            if self._slots is None:
                self._slots = asyncio.Semaphore(self._concurrency)
            async with self._slots:
                return await self._run(pipeline, job)
        finally:
            self._admitted -= 1

    async def _run(self, pipeline: ImagePipeline, job: Drawing) -> list[bytes]:
        cancelled = threading.Event()
        work = asyncio.ensure_future(in_a_thread_of_its_own("images", pipeline.draw, job, cancelled))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            cancelled.set()  # the drawing stops at its next step; the slot is held until it has
            await asyncio.gather(work, return_exceptions=True)
            raise
        except Interrupted:
            raise errors.Cancelled("The drawing was cancelled.") from None
        except OSError as exc:  # Pillow: the image to edit is not one it can read
            raise errors.InvalidArgument(f"The image to edit could not be read: {exc}") from None
        except CannotEdit as exc:
            raise errors.InvalidArgument(
                f"This image model cannot edit images (no image-to-image form): {exc}"
            ) from None

    def close(self) -> None:
        """Nothing is held: each drawing runs on a thread of its own, and a caller cancelled stops its drawing at
        the next step."""

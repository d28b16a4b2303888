"""An image pipeline loaded from its folder, and one drawing on it (text to image, or an image edited by a prompt
when the pipeline has an image-to-image form). Drawing blocks: callers run it on the image worker's threads."""

from __future__ import annotations

import inspect
import io
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


#: A drawing stopped because its caller left (``cancelled`` was set).
class Interrupted(Exception):
    pass


class CannotEdit(Exception):
    """The pipeline has no image-to-image form."""


@dataclass(frozen=True)
class Drawing:
    prompt: str
    width: int
    height: int
    count: int = 1
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    image: bytes | None = None  # an image to edit (any format Pillow reads)
    strength: float = 0.6  # how much of it the edit may change
    mime_type: str = "image/png"


class ImagePipeline:
    def __init__(self, folder: Path, *, steps: int | None = None, guidance_scale: float | None = None) -> None:
        import torch
        from diffusers import DiffusionPipeline

        self.folder = folder
        self._steps = steps
        self._guidance = guidance_scale
        self._torch = torch
        self._pipe = DiffusionPipeline.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
        self._pipe.set_progress_bar_config(disable=True)
        self._edit: Any = None
        self._lock = threading.Lock()  # one call at a time per pipeline: its schedulers keep state

    def draw(self, job: Drawing, cancelled: threading.Event) -> list[bytes]:
        """The images, encoded as ``job.mime_type``; ``Interrupted`` once ``cancelled`` is set."""
        pipe = self._pipe if job.image is None else self._editor()
        kwargs: dict[str, Any] = {
            "prompt": job.prompt,
            "num_images_per_prompt": job.count,
            "generator": [self._torch.Generator("cpu").manual_seed(s) for s in _seeds(job)],
            "output_type": "pil",
        }
        if job.image is None:
            kwargs.update(width=job.width, height=job.height)
        else:
            kwargs.update(image=_image(job.image, job.width, job.height), strength=job.strength)
        if job.negative_prompt:
            kwargs["negative_prompt"] = job.negative_prompt
        if (steps := job.steps or self._steps) is not None:
            kwargs["num_inference_steps"] = steps
        if (guidance := job.guidance_scale if job.guidance_scale is not None else self._guidance) is not None:
            kwargs["guidance_scale"] = guidance
        accepted = inspect.signature(pipe.__call__).parameters
        if "callback_on_step_end" in accepted:

            def stop_if_cancelled(p: Any, step: int, timestep: Any, tensors: dict) -> dict:
                if cancelled.is_set():
                    p._interrupt = True
                return {}

            kwargs["callback_on_step_end"] = stop_if_cancelled
        with self._lock, self._torch.inference_mode():
            if cancelled.is_set():
                raise Interrupted()
            images = pipe(**{k: v for k, v in kwargs.items() if k in accepted}).images
        if cancelled.is_set():
            raise Interrupted()
        return [_encoded(image, job.mime_type) for image in images]

    def _editor(self) -> Any:
        if self._edit is None:
            from diffusers import AutoPipelineForImage2Image

            try:
                self._edit = AutoPipelineForImage2Image.from_pipe(self._pipe)
            except (ValueError, KeyError, TypeError) as exc:
                raise CannotEdit(str(exc)) from None
            self._edit.set_progress_bar_config(disable=True)
        return self._edit


def _seeds(job: Drawing) -> list[int]:
    first = job.seed if job.seed is not None else random.randrange(2**31)
    return [(first + i) % 2**32 for i in range(job.count)]


def _image(data: bytes, width: int, height: int) -> Any:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").resize((width, height))


def _encoded(image: Any, mime_type: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG" if mime_type == "image/jpeg" else "PNG")
    return out.getvalue()

"""The ``diffusers`` engine's loader (see ``engines.registry``): image models load in this process."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from localgem.engines.diffusion.pipelines import ImagePipeline

if TYPE_CHECKING:
    from localgem.models.registry import ModelEntry
    from localgem.settings import Settings


def diffusion_factory(settings: Settings) -> Callable[[ModelEntry], ImagePipeline]:
    def load(entry: ModelEntry) -> ImagePipeline:
        if settings.media_threads:
            import torch

            torch.set_num_threads(settings.media_threads)
        return ImagePipeline(
            entry.weights(settings.data_dir), steps=entry.config.steps, guidance_scale=entry.config.guidance_scale
        )

    return load

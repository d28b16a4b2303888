"""responseModalities IMAGE: a chat model with an image model attached (its ``image_model``, else the server's
``default_image_model``) answers with an image, as Gemini's image models do: ``inlineData`` ``image/png`` drawn from
the request's last user turn (its text is the prompt; an image in it is edited, where the pipeline has an
image-to-image form), sized by ``imageConfig`` (``aspectRatio``, ``imageSize``). With TEXT too, the chat model's
answer comes first and the image after it; IMAGE alone draws without running the chat model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from localgem import errors
from localgem.engines.diffusion.pipelines import Drawing
from localgem.engines.diffusion.sizes import ASPECT_RATIOS, IMAGE_SIZES, by_area
from localgem.models.registry import ModelEntry
from localgem.types.content import Blob, Content, Part
from localgem.types.generation import GenerationConfig
from localgem.types.responses import Candidate, GenerateContentResponse, ModalityTokenCount

#: Output tokens Google counts for one image (a 1024×1024 image: 1290).
IMAGE_TOKENS = 1290


class Painter(Protocol):
    """Who draws: the image model that serves a chat model, its default size, and the image worker."""

    def image_model(self, chat: ModelEntry) -> ModelEntry | None: ...
    def side(self, entry: ModelEntry) -> int: ...
    async def draw(self, entry: ModelEntry, job: Drawing) -> list[bytes]: ...


@dataclass(frozen=True)
class ImagePlan:
    model: ModelEntry  # the image model
    drawing: Drawing
    text_too: bool  # TEXT requested beside IMAGE


def image_plan(
    config: GenerationConfig | None,
    chat: ModelEntry,
    contents: list[Content] | None,
    painter: Painter | None,
    where: str = "generation_config",
) -> ImagePlan | None:
    """None unless IMAGE output is asked for; every 400 about image output here."""
    config = config or GenerationConfig()
    modalities = {m for m in (config.response_modalities or []) if m != "MODALITY_UNSPECIFIED"}
    image_config = config.image_config
    if "IMAGE" not in modalities:
        if image_config is not None and (image_config.aspect_ratio or image_config.image_size):
            raise errors.invalid_field(f"{where}.image_config", "imageConfig needs IMAGE among responseModalities.")
        return None
    if "AUDIO" in modalities:
        raise errors.invalid_field(f"{where}.response_modalities", "IMAGE and AUDIO output cannot be combined.")
    model = painter.image_model(chat) if painter is not None else None
    if painter is None or model is None:
        raise errors.invalid_field(
            f"{where}.response_modalities",
            f"IMAGE output needs an image model, and models/{chat.id} has none: configure one (a diffusers pipeline "
            'folder, task = "image") and name it in default_image_model, or in this model\'s image_model.',
        )
    if (config.candidate_count or 1) > 1:
        raise errors.invalid_field(f"{where}.candidate_count", "IMAGE output generates one candidate.")
    aspect_ratio = (image_config.aspect_ratio if image_config else None) or "1:1"
    if aspect_ratio not in ASPECT_RATIOS:
        raise errors.invalid_field(
            f"{where}.image_config.aspect_ratio",
            f"aspectRatio {aspect_ratio!r} is not supported; use one of: {', '.join(ASPECT_RATIOS)}.",
        )
    size = image_config.image_size if image_config else None
    if size is not None and size not in IMAGE_SIZES:
        raise errors.invalid_field(
            f"{where}.image_config.image_size", f"imageSize {size!r} is not supported; use one of: 1K, 2K, 4K."
        )
    last = next((c for c in reversed(contents or []) if c.role in (None, "user")), None)
    parts = last.parts or [] if last is not None else []
    prompt = " ".join(p.text.strip() for p in parts if p.text and not p.thought).strip()
    if not prompt:
        raise errors.invalid_field("contents", "IMAGE output draws what the last user turn says; it has no text.")
    image = next(
        (p.inline_data.data for p in parts if p.inline_data and (p.inline_data.mime_type or "").startswith("image/")),
        None,
    )
    width, height = by_area(IMAGE_SIZES[size] if size else painter.side(model), aspect_ratio)
    drawing = Drawing(prompt=prompt, width=width, height=height, seed=config.seed, image=image)
    return ImagePlan(model, drawing, "TEXT" in modalities)


async def with_image(response: GenerateContentResponse, plan: ImagePlan, painter: Painter) -> GenerateContentResponse:
    """The answer (text, or nothing when IMAGE alone was asked for) with the image after it."""
    (data,) = await painter.draw(plan.model, plan.drawing)
    candidate = (response.candidates or [Candidate(index=0, finish_reason="STOP")])[0]
    parts = list(candidate.content.parts or []) if candidate.content and plan.text_too else []
    candidate.content = Content(role="model", parts=[*parts, image_part(data)])
    response.candidates = [candidate]
    _image_usage(response, plan.text_too)
    return response


async def streamed_with_image(
    chunks: AsyncIterator[GenerateContentResponse], plan: ImagePlan, painter: Painter
) -> AsyncIterator[GenerateContentResponse]:
    """The answer's chunks as they come; the image in the last one (the one with the usage)."""
    async for chunk in chunks:
        last = chunk.usage_metadata is not None and chunk.usage_metadata.candidates_token_count is not None
        if last:
            chunk = await with_image(chunk, plan, painter)
        yield chunk


def image_part(data: bytes) -> Part:
    return Part(inline_data=Blob(data=data, mime_type="image/png"))


def _image_usage(response: GenerateContentResponse, text_too: bool) -> None:
    usage = response.usage_metadata
    if usage is None:
        return
    text = usage.candidates_token_count or 0 if text_too else 0
    details = [ModalityTokenCount(modality="IMAGE", token_count=IMAGE_TOKENS)]
    if text_too:
        details.insert(0, ModalityTokenCount(modality="TEXT", token_count=text))
    usage.candidates_tokens_details = details
    usage.candidates_token_count = text + IMAGE_TOKENS
    usage.total_token_count = (
        (usage.prompt_token_count or 0) + usage.candidates_token_count + (usage.thoughts_token_count or 0)
    )

"""``models.predict`` on an image model, as Imagen answers it: ``instances[].prompt`` (and ``instances[].image`` to
edit one) with ``parameters`` → ``predictions[]`` of ``{bytesBase64Encoded, mimeType}``, one per image."""

from __future__ import annotations

import base64

from localgem import errors
from localgem.engines.diffusion.pipelines import Drawing
from localgem.engines.diffusion.sizes import ASPECT_RATIOS, IMAGE_SIZES, by_area
from localgem.media.params import Fields, image_bytes
from localgem.media.studio import Studio
from localgem.media.wire import PredictRequest, PredictResponse
from localgem.models.registry import ModelRegistry

MAX_IMAGES = 4  # per instance, as Imagen's sampleCount
MAX_INSTANCES = 4
PERSON_GENERATION = ("dont_allow", "allow_adult", "allow_all")
MIME_TYPES = ("image/png", "image/jpeg")


class ImageService:
    def __init__(self, registry: ModelRegistry, studio: Studio) -> None:
        self._registry = registry
        self._studio = studio

    async def predict(self, model: str, body: PredictRequest) -> PredictResponse:
        entry = self._registry.resolve(model, "predict")
        instances = body.instances or []
        if not instances:
            raise errors.invalid_field("instances", 'instances is required: [{"prompt": "..."}].')
        if len(instances) > MAX_INSTANCES:
            raise errors.invalid_field("instances", f"At most {MAX_INSTANCES} instances per request.")
        params = Fields(body.parameters, "parameters")
        count = params.integer("sampleCount", 1, MAX_IMAGES) or params.integer("numberOfImages", 1, MAX_IMAGES) or 1
        aspect_ratio = params.text("aspectRatio", choices=ASPECT_RATIOS) or "1:1"
        size = params.text("sampleImageSize", choices=tuple(IMAGE_SIZES)) or params.text(
            "imageSize", choices=tuple(IMAGE_SIZES)
        )
        person = params.text("personGeneration")
        if person is not None and person.lower() not in PERSON_GENERATION:
            raise errors.invalid_field(
                "parameters.personGeneration", f"personGeneration must be one of {', '.join(PERSON_GENERATION)}."
            )
        mime_type = params.child("outputOptions").text("mimeType", choices=MIME_TYPES) or "image/png"
        params.child("outputOptions").integer("compressionQuality", 0, 100)
        for name in ("enhancePrompt", "addWatermark", "includeRaiReason", "includeSafetyAttributes"):
            params.flag(name)  # accepted: no prompt rewriting, watermark or safety classifier runs here
        side = IMAGE_SIZES[size] if size else self._studio.side(entry)
        width, height = by_area(side, aspect_ratio)
        common = dict(
            width=width,
            height=height,
            count=count,
            negative_prompt=params.text("negativePrompt"),
            seed=params.integer("seed", 0, 2**32 - 1),
            guidance_scale=params.number("guidanceScale", 0.0, 100.0),
            mime_type=mime_type,
        )
        jobs = []
        for i, instance in enumerate(instances):
            fields = Fields(instance, f"instances[{i}]")
            prompt = fields.text("prompt")
            if not prompt or not prompt.strip():
                raise errors.invalid_field(f"instances[{i}].prompt", f"instances[{i}].prompt is required.")
            image = image_bytes(fields.child("image")) if fields.raw("image") is not None else None
            jobs.append(Drawing(prompt=prompt, image=image, **common))
        predictions = []
        for job in jobs:
            for data in await self._studio.draw(entry, job):
                predictions.append(
                    {"bytesBase64Encoded": base64.b64encode(data).decode("ascii"), "mimeType": mime_type}
                )
        return PredictResponse(predictions=predictions)

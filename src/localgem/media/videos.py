"""``models.predictLongRunning`` on a video model, as Veo answers it: the request becomes a durable job (a
``generatedFiles/<id>`` in GENERATING) and an Operation ``models/<model>/operations/<id>`` that ends with
``generateVideoResponse.generatedSamples[].video.uri``: a Files API file (``video/mp4``) to download. The job runs
on the operations runner (kind ``video``, see ``executor``). Also generatedFiles.list/get and the operations of
``models/*/operations`` and ``generatedFiles/*/operations``."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

from localgem import errors, names
from localgem.engines.diffusion.sizes import ASPECT_RATIOS, RESOLUTIONS, by_area, by_short_side, native_side
from localgem.engines.diffusion.video_worker import VideoJob
from localgem.media.params import Fields
from localgem.media.wire import (
    GeneratedFile,
    GeneratedSample,
    GenerateVideoResponse,
    ListGeneratedFilesResponse,
    PredictLongRunningMetadata,
    PredictLongRunningResponse,
    PredictRequest,
    Video,
)
from localgem.models.registry import ModelEntry, ModelRegistry
from localgem.operations.model import ListOperationsResponse, Operation
from localgem.operations.runner import Runner
from localgem.storage.generated_files import FAILED, GENERATED, GENERATING, GeneratedFileRepository
from localgem.storage.records import GeneratedFileRecord
from localgem.types.paging import paginate
from localgem.types.status import Status
from localgem.types.wire import rfc3339

Clock = Callable[[], datetime]
#: The Files API file's URI for a file id (the download link, as this client reached the server).
FileUri = Callable[[str], str]

MAX_PROMPT_CHARS = 10_000


class VideoService:
    def __init__(
        self,
        repository: GeneratedFileRepository,
        registry: ModelRegistry,
        runner: Runner,
        clock: Clock,
        *,
        data_dir: Path,
        ttl: timedelta,
    ) -> None:
        self._repo = repository
        self._registry = registry
        self._runner = runner
        self._clock = clock
        self._data_dir = data_dir
        self._ttl = ttl

    async def start(self, project: str, model: str, body: PredictRequest) -> Operation:
        entry = self._registry.resolve(model, "predictLongRunning")
        job = self._job(entry, body)
        now = self._clock()
        record = GeneratedFileRecord(
            project=project,
            id=names.new_id(),
            operation_id=names.new_id(),
            model=f"models/{model.removeprefix('models/')}",
            model_id=entry.id,
            request=json.dumps(asdict(job)),
            mime_type="video/mp4",
            state=GENERATING,
            create_time=now,
            update_time=now,
            expire_time=now + self._ttl,
        )
        await self._repo.add(record)
        self._runner.added()
        return self.operation(record, None)

    def _job(self, entry: ModelEntry, body: PredictRequest) -> VideoJob:
        instances = body.instances or []
        if len(instances) != 1:
            raise errors.invalid_field("instances", 'instances must hold exactly one instance: [{"prompt": "..."}].')
        instance = Fields(instances[0], "instances[0]")
        prompt = instance.text("prompt", max_chars=MAX_PROMPT_CHARS)
        if not prompt or not prompt.strip():
            raise errors.invalid_field("instances[0].prompt", "instances[0].prompt is required.")
        for name in ("image", "video", "lastFrame", "referenceImages"):
            if instance.raw(name) is not None:
                raise errors.invalid_field(
                    f"instances[0].{name}", f"instances[0].{name}: this video model makes videos from text only."
                )
        params = Fields(body.parameters, "parameters")
        params.integer("sampleCount", 1, 1)  # one video per request
        params.integer("numberOfVideos", 1, 1)
        aspect_ratio = params.text("aspectRatio", choices=ASPECT_RATIOS) or "16:9"
        resolution = params.text("resolution", choices=tuple(RESOLUTIONS))
        params.text("personGeneration")
        for name in ("enhancePrompt", "generateAudio", "addWatermark"):
            params.flag(name)
        if params.raw("storageUri") is not None:
            raise errors.invalid_field("parameters.storageUri", "Videos are kept as files here, not in Cloud Storage.")
        config = entry.config
        fps = params.integer("fps", 1, 120) or config.fps
        seconds = params.integer("durationSeconds", 1, 60)
        frames = config.frames if seconds is None else max(1, seconds * fps)
        if resolution is not None:
            width, height = by_short_side(RESOLUTIONS[resolution], aspect_ratio)
        else:
            width, height = by_area(config.image_side or native_side(entry.weights(self._data_dir)), aspect_ratio)
        seed = params.integer("seed", 0, 2**32 - 1)
        return VideoJob(
            prompt=prompt,
            width=width,
            height=height,
            frames=frames,
            fps=fps,
            seed=seed if seed is not None else random.randrange(2**32),
            negative_prompt=params.text("negativePrompt"),
            steps=config.steps,
            guidance_scale=config.guidance_scale,
        )

    # -- reading ---------------------------------------------------------------------------------------

    def operation(self, record: GeneratedFileRecord, file_uri: FileUri | None) -> Operation:
        job = json.loads(record.request)
        operation = Operation(
            name=f"{record.model}/operations/{record.operation_id}",
            metadata=PredictLongRunningMetadata(
                generated_file=f"generatedFiles/{record.id}",
                model=record.model,
                completed_steps=record.progress,
                total_steps=job.get("steps"),
                create_time=rfc3339(record.create_time),
                update_time=rfc3339(record.update_time),
            ),
            done=record.state != GENERATING,
        )
        if record.state == FAILED:
            operation.error = _status(record.error)
        elif record.state == GENERATED and record.file_id is not None:
            uri = file_uri(record.file_id) if file_uri is not None else f"files/{record.file_id}"
            video = Video(uri=uri, encoding=record.mime_type)
            operation.response = PredictLongRunningResponse(
                generate_video_response=GenerateVideoResponse(generated_samples=[GeneratedSample(video=video)])
            )
        return operation

    async def get_operation(self, project: str, name: str, file_uri: FileUri | None = None) -> Operation:
        return self.operation(await self._by_operation(project, name), file_uri)

    async def list_operations(
        self, project: str, parent: str, page_size: int | None, page_token: str | None, file_uri: FileUri | None = None
    ) -> ListOperationsResponse:
        """``models/<m>/operations``: the project's video operations on that model (by the name it was asked by,
        or the local model it ran on)."""
        model = parent.split("/")[1]
        records = [r for r in await self._live(project) if model in (r.model.split("/")[1], r.model_id)]
        page, token = paginate(records, page_size, page_token, default_size=50, max_size=1000)
        return ListOperationsResponse(operations=[self.operation(r, file_uri) for r in page], next_page_token=token)

    async def cancel(self, project: str, name: str) -> None:
        record = await self._by_operation(project, name)
        await self._runner.cancel("video", project, record.operation_id)

    async def delete(self, project: str, name: str) -> None:
        raise errors.InvalidArgument("Video operations cannot be deleted; they expire with their generated file.")

    async def generated_file(self, project: str, name: str) -> GeneratedFile:
        file_id = name.removeprefix("generatedFiles/")
        record = await self._repo.get(project, file_id)
        if record is None or record.expire_time <= self._clock():
            raise errors.NotFound(f"generatedFiles/{file_id} not found.")
        return _generated_file(record)

    async def generated_files(
        self, project: str, page_size: int | None, page_token: str | None
    ) -> ListGeneratedFilesResponse:
        records = await self._live(project)
        page, token = paginate(records, page_size, page_token, default_size=10, max_size=50)
        return ListGeneratedFilesResponse(generated_files=[_generated_file(r) for r in page], next_page_token=token)

    async def sweep(self) -> int:
        return await self._repo.remove_expired(self._clock())

    async def _live(self, project: str) -> list[GeneratedFileRecord]:
        now = self._clock()
        return [r for r in await self._repo.of_project(project) if r.expire_time > now]

    async def _by_operation(self, project: str, name: str) -> GeneratedFileRecord:
        """``models/<m>/operations/<op>`` or ``generatedFiles/<id>/operations/<op>``."""
        parts = name.split("/")
        record = await self._repo.by_operation(project, parts[-1]) if len(parts) == 4 else None
        if record is not None and parts[0] == "generatedFiles" and parts[1] != record.id:
            record = None
        if record is None or record.expire_time <= self._clock():
            raise errors.NotFound(f"Operation {name} not found.")
        return record


def _generated_file(record: GeneratedFileRecord) -> GeneratedFile:
    return GeneratedFile(
        name=f"generatedFiles/{record.id}",
        mime_type=record.mime_type,
        state=record.state,
        error=_status(record.error) if record.state == FAILED else None,
        file=f"files/{record.file_id}" if record.file_id else None,
        expire_time=rfc3339(record.expire_time),
    )


_CODES = {"CANCELLED": 1, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "FAILED_PRECONDITION": 9, "INTERNAL": 13}


def _status(error: str | None) -> Status:
    """``"CODE: message"`` as stored → google.rpc.Status."""
    code, _, message = (error or "INTERNAL: the video job failed.").partition(": ")
    return Status(code=_CODES.get(code, 13), message=message or code)

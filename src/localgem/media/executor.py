"""The video executor (kind ``video`` on the media runner): renders a job in a child process
(``engines.diffusion.video_worker``), niced and dying with the server, records its progress as it renews its lease,
and stores the MP4 as a Files API file (source GENERATED) that the job's operation points at.

A worker that dies — killed, out of memory, a crash in native code — ends the job FAILED with the reason (its exit
status and the last lines it wrote), never stuck. A job cancelled while it renders loses its lease at the next
renewal: the worker is killed at once. A server that dies mid-job leaves the lease to lapse: the job runs again,
here or on another server."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import time
from pathlib import Path

from localgem import errors
from localgem.engines.diffusion.video_worker import VideoJob, VideoSpec
from localgem.files.service import FileService
from localgem.models.registry import ModelRegistry
from localgem.operations.child import events, read_chunks, start_module
from localgem.operations.runner import Lease
from localgem.storage.generated_files import FAILED, GENERATED, GeneratedFileRepository
from localgem.storage.records import GeneratedFileRecord

log = logging.getLogger(__name__)

_WORKER = "localgem.engines.diffusion.video_worker"


class VideoExecutor:
    def __init__(
        self,
        repository: GeneratedFileRepository,
        registry: ModelRegistry,
        files: FileService,
        *,
        data_dir: Path,
        threads: int | None,
        niceness: int,
    ) -> None:
        self._repo = repository
        self._registry = registry
        self._files = files
        self._data_dir = data_dir
        self._threads = threads
        self._niceness = niceness
        #: (project, id) → the worker's pid while it renders (tests kill it to prove a crash is survived).
        self.workers: dict[tuple[str, str], int] = {}

    async def run(self, record: GeneratedFileRecord, lease: Lease) -> str | None:
        folder = self._data_dir / "videos" / f"{record.id}-{record.operation_id}"
        try:
            try:
                spec = self._spec(record, folder)
            except (errors.ApiError, OSError, ValueError, KeyError) as exc:
                message = exc.message if isinstance(exc, errors.ApiError) else str(exc)
                return await self._fail(lease, record, f"FAILED_PRECONDITION: {message}")
            outcome = await self._render(record, spec, folder, lease)
            if outcome != GENERATED:
                return outcome
            file = await self._files.create_generated(
                record.project, f"video-{record.id}.mp4", record.mime_type, read_chunks(Path(spec.output))
            )
            if not await self._repo.note(lease.owner, record, file_id=file.name.removeprefix("files/")):
                return None
            return GENERATED
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _spec(self, record: GeneratedFileRecord, folder: Path) -> VideoSpec:
        entry = self._registry.resolve(record.model_id, "predictLongRunning")
        job = VideoJob(**json.loads(record.request))
        folder.mkdir(parents=True, exist_ok=True)
        spec = VideoSpec(job, str(entry.weights(self._data_dir)), str(folder / "video.mp4"), self._threads)
        spec.save(folder / "spec.json")
        return spec

    async def _render(self, record: GeneratedFileRecord, spec: VideoSpec, folder: Path, lease: Lease) -> str | None:
        log_path = folder / "worker.log"
        with log_path.open("ab") as stderr:
            process = await start_module(
                "localgem.engines.diffusion.video_worker",
                str(folder / "spec.json"),
                stderr=stderr,
                niceness=self._niceness,
            )
        key = (record.project, record.id)
        self.workers[key] = process.pid
        try:
            assert process.stdout is not None
            renewed, step = time.monotonic(), None
            async for event in events(process.stdout):
                if event.get("event") == "step":
                    step = int(event["step"])
                if step is not None and time.monotonic() - renewed >= 1.0:
                    if not await lease.renew([{"progress": step}]):
                        return None
                    renewed, step = time.monotonic(), None
            code = await process.wait()
            if step is not None and not await lease.renew([{"progress": step}]):
                return None
        finally:
            self.workers.pop(key, None)
            if process.returncode is None:
                process.kill()
                await process.wait()
        if code != 0 or not Path(spec.output).is_file():
            tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-3:])[-500:]
            how = f"was killed by signal {-code} ({_signal_name(-code)})" if code < 0 else f"exited with status {code}"
            log.warning("video generatedFiles/%s failed: the worker %s: %s", record.id, how, tail)
            return await self._fail(lease, record, f"INTERNAL: the video worker {how}. {tail}".strip())
        return GENERATED

    async def _fail(self, lease: Lease, record: GeneratedFileRecord, reason: str) -> str | None:
        return FAILED if await self._repo.note(lease.owner, record, error=reason[:2000]) else None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"

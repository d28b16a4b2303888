"""Wires image and video generation together: the image worker, the video jobs' runner and executor."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from localgem.engines.registry import model_loader
from localgem.files.service import Clock, FileService
from localgem.media.executor import VideoExecutor
from localgem.media.predict import ImageService
from localgem.media.studio import Studio
from localgem.media.videos import VideoService
from localgem.models.registry import ModelRegistry
from localgem.operations.runner import Runner
from localgem.settings import Settings
from localgem.storage.generated_files import GeneratedFileRepository

#: How often video jobs past their deadline are ended and ended ones past their expiry removed (both are writes,
#: kept off the poll so that an idle server does not write every few seconds).
SWEEP_SECONDS = 600.0


@dataclass
class Media:
    studio: Studio
    images: ImageService
    videos: VideoService
    executor: VideoExecutor
    runner: Runner
    swept_at: float = -SWEEP_SECONDS

    @classmethod
    def build(
        cls,
        settings: Settings,
        repository: GeneratedFileRepository,
        registry: ModelRegistry,
        files: FileService,
        clock: Clock,
    ) -> Media:
        studio = Studio(
            model_loader(settings, "image"),
            settings.data_dir,
            concurrency=settings.image_concurrency,
            queue=settings.image_queue,
        )
        runner = Runner(
            clock,
            lease=timedelta(seconds=settings.batch_lease_seconds),
            deadline=timedelta(seconds=settings.batch_deadline_seconds),
        )
        executor = VideoExecutor(
            repository,
            registry,
            files,
            data_dir=Path(settings.data_dir),
            threads=settings.media_threads,
            niceness=settings.inference_niceness,
        )
        runner.register("video", executor, repository)
        videos = VideoService(
            repository,
            registry,
            runner,
            clock,
            data_dir=settings.data_dir,
            ttl=timedelta(seconds=settings.file_ttl_seconds),
        )
        return cls(studio, ImageService(registry, studio), videos, executor, runner)

    async def step(self) -> float | None:
        """A ``Worker`` step: expire and forget old jobs (every ``SWEEP_SECONDS``), then render one video (again at
        once if it rendered one)."""
        if time.monotonic() - self.swept_at >= SWEEP_SECONDS:
            await self.runner.expire()
            await self.videos.sweep()
            self.swept_at = time.monotonic()
        return 0.0 if await self.runner.run_once() else None

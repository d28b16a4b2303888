"""Tuning's parts over one repository, so the app wires a single object: the service, the runner that trains
(its own: a job of minutes does not hold batches up, and one trains at a time), and its operations' source."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from localgem import errors
from localgem.generation.prompts import Prompts
from localgem.models.registry import ModelRegistry
from localgem.operations.model import ListOperationsResponse, Operation
from localgem.operations.runner import Runner
from localgem.storage.blobs import BlobStore
from localgem.storage.tuned_models import TunedModelRepository
from localgem.tuning.executor import TrainingOptions, TuningExecutor
from localgem.tuning.service import Clock, TuningLimits, TuningService


class TuningOperations:
    """``tunedModels/*/operations`` for ``operations.service.OperationService``."""

    def __init__(self, service: TuningService) -> None:
        self._service = service

    async def get(self, project: str, name: str) -> Operation:
        return await self._service.operation(project, name)

    async def list(
        self, project: str, parent: str, page_size: int | None, page_token: str | None
    ) -> ListOperationsResponse:
        return await self._service.operations(project, parent, page_size, page_token)

    async def cancel(self, project: str, name: str) -> None:
        await self._service.cancel(project, name)

    async def delete(self, project: str, name: str) -> None:
        raise errors.Unimplemented("A tuning operation is not deleted: delete its tuned model.")


@dataclass(frozen=True)
class Tuning:
    service: TuningService
    runner: Runner
    operations: TuningOperations

    @classmethod
    def build(
        cls,
        repository: TunedModelRepository,
        registry: ModelRegistry,
        prompts: Prompts,
        blobs: BlobStore,
        clock: Clock,
        *,
        options: TrainingOptions,
        limits: TuningLimits,
        lease: timedelta,
        deadline: timedelta,
    ) -> Tuning:
        runner = Runner(clock, lease=lease, deadline=deadline)
        service = TuningService(repository, registry, prompts, blobs, runner, clock, options.data_dir, limits)
        executor = TuningExecutor(repository, registry, prompts, blobs, options, clock)
        runner.register("tune", executor, repository)
        return cls(service, runner, TuningOperations(service))

"""The tuning executor, registered with the tuning runner under the kind ``tune``: it turns a tuned model's examples
into tokens, trains in a child process (``trainer``) niced and bounded in threads, records its progress (snapshots)
as it renews its lease, and stores the adapter in the blob store.

Durability: the training folder (``<data_dir>/tuning/<model>-<operation>``) keeps the trainer's checkpoint. A server
that dies mid-way (its child dies with it) leaves the model CREATING under a lease that lapses; the next claim,
here or on a server sharing the data dir, resumes from the checkpoint (else starts over), and the snapshots after
the checkpoint's step are trained and recorded again. A cancelled or deleted job loses its lease at the next
renewal: the child is killed at once and the folder removed.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localgem import errors, names
from localgem.generation.prompts import Prompts
from localgem.models.registry import ModelRegistry
from localgem.operations.child import events, read_chunks, start_module
from localgem.operations.runner import Lease
from localgem.storage.blobs import BlobStore
from localgem.storage.records import TunedModelRecord
from localgem.storage.tuned_models import ACTIVE, FAILED, TunedModelRepository
from localgem.tuning.dataset import tokenized
from localgem.tuning.trainer import TrainingSpec
from localgem.types.wire import rfc3339

log = logging.getLogger(__name__)

_MAX_ADAPTER_BYTES = 2 << 30


@dataclass(frozen=True)
class TrainingOptions:
    data_dir: Path
    threads: int
    niceness: int
    checkpoint_seconds: float
    max_example_tokens: int


class TuningExecutor:
    def __init__(
        self,
        repository: TunedModelRepository,
        registry: ModelRegistry,
        prompts: Prompts,
        blobs: BlobStore,
        options: TrainingOptions,
        clock: Any,
    ) -> None:
        self._repo = repository
        self._registry = registry
        self._prompts = prompts
        self._blobs = blobs
        self._options = options
        self._clock = clock

    async def run(self, record: TunedModelRecord, lease: Lease) -> str | None:
        folder = self._options.data_dir / "tuning" / f"{record.id}-{record.operation_id}"
        try:
            spec = await self._spec(record, folder)
        except (errors.ApiError, OSError, ValueError) as exc:
            message = exc.message if isinstance(exc, errors.ApiError) else str(exc)
            return await self._fail(lease, record, f"FAILED_PRECONDITION: {message}")
        if record.start_time is None and not await self._repo.note(lease.owner, record, start_time=self._clock()):
            return None
        outcome = await self._train(record, spec, folder, lease)
        if outcome == ACTIVE and not await self._store_adapter(record, Path(spec.output), lease):
            outcome = None
        if outcome is not None or not await self._still_creating(record):
            # Ended, cancelled or deleted: nothing to resume. (A run that raised, or whose lease lapsed, keeps its
            # checkpoint for the next.)
            shutil.rmtree(folder, ignore_errors=True)
        return outcome

    async def _spec(self, record: TunedModelRecord, folder: Path) -> TrainingSpec:
        entry = self._registry.resolve(record.base_model, "generateContent")
        examples = [(text_input, output) for text_input, output in json.loads(record.examples)]
        tokens = await tokenized(self._prompts, record.project, entry, examples, self._options.max_example_tokens)
        hyper = json.loads(record.hyperparameters)
        folder.mkdir(parents=True, exist_ok=True)
        spec = TrainingSpec(
            gguf=str(entry.weights(self._options.data_dir)),
            examples=[(t.prompt, t.output) for t in tokens],
            epochs=hyper["epoch_count"],
            batch_size=hyper["batch_size"],
            learning_rate=hyper["learning_rate"],
            output=str(folder / "adapter.gguf"),
            threads=self._options.threads,
            checkpoint_seconds=self._options.checkpoint_seconds,
        )
        spec.save(folder / "spec.json")
        return spec

    async def _train(self, record: TunedModelRecord, spec: TrainingSpec, folder: Path, lease: Lease) -> str | None:
        snapshots = json.loads(record.snapshots)
        with (folder / "trainer.log").open("ab") as stderr:
            process = await start_module(
                "localgem.tuning.trainer", str(folder / "spec.json"), stderr=stderr, niceness=self._options.niceness
            )
        try:
            written = time.monotonic()
            changed = False  # snapshots not recorded yet (written together, with a lease renewal)
            assert process.stdout is not None
            async for event in events(process.stdout):
                if event["event"] == "started":
                    # A resumed run trains again the steps after its checkpoint.
                    snapshots = [s for s in snapshots if s["step"] <= event["resumed_from"]]
                    changed = True
                elif event["event"] == "step":
                    snapshots.append(
                        {
                            "step": event["step"],
                            "epoch": event["epoch"],
                            "mean_loss": event["mean_loss"],
                            "compute_time": rfc3339(self._clock()),
                        }
                    )
                    changed = True
                if changed and time.monotonic() - written >= 1.0:
                    if not await lease.renew([{"snapshots": json.dumps(snapshots)}]):
                        return None
                    changed, written = False, time.monotonic()
            code = await process.wait()
            if changed and not await lease.renew([{"snapshots": json.dumps(snapshots)}]):
                return None
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if code != 0:
            tail = (folder / "trainer.log").read_text(errors="replace").strip().splitlines()[-3:]
            log.warning("tuning tunedModels/%s failed (exit %s): %s", record.id, code, " | ".join(tail))
            return await self._fail(lease, record, f"INTERNAL: training stopped (exit {code}): {' '.join(tail)[-500:]}")
        return ACTIVE

    async def _store_adapter(self, record: TunedModelRecord, path: Path, lease: Lease) -> bool:
        upload_id = names.new_id(24)
        try:
            await self._blobs.write_partial(upload_id, 0, read_chunks(path), _MAX_ADAPTER_BYTES)
            sealed = await self._blobs.seal_partial(upload_id)
            return await self._repo.attach(
                lease.owner,
                record,
                sealed.sha256,
                sealed.size_bytes,
                self._clock(),
                lambda: self._blobs.publish(upload_id, sealed.sha256),
            )
        finally:
            await self._blobs.discard_partial(upload_id)  # nothing, once published

    async def _fail(self, lease: Lease, record: TunedModelRecord, reason: str) -> str | None:
        return FAILED if await self._repo.note(lease.owner, record, error=reason[:2000]) else None

    async def _still_creating(self, record: TunedModelRecord) -> bool:
        """Kept for a resume: the lease was lost to a lapse, not to a cancel or a delete."""
        found = await self._repo.get(record.id)
        return found is not None and found.operation_id == record.operation_id and found.state == "CREATING"

"""tunedModels: create (a tuning job, as an operation), get, list, patch, delete, transferOwnership, permissions, the
operations of ``tunedModels/*/operations``, and what serving a tuned model needs (``target``). Knows nothing of HTTP.

Access is as corpora's (``auth.grants``): the project that created a tuned model owns it; READER may generate with
it and read it, WRITER may also share it, OWNER may also patch, delete and transfer it. Other projects get 404.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from localgem import errors, names
from localgem.auth.grants import Grants, project_of
from localgem.generation.prompts import Prompts
from localgem.models.registry import ModelEntry, ModelRegistry
from localgem.operations.model import ListOperationsResponse, Operation
from localgem.operations.runner import Runner
from localgem.storage.blobs import BlobStore
from localgem.storage.records import TunedModelRecord
from localgem.storage.tuned_models import ACTIVE, CREATING, FAILED, Exists, TunedModelRepository
from localgem.tuning.adapter_gguf import ARCHITECTURES, base_shape
from localgem.tuning.dataset import EXAMPLES_FIELD, tokenized
from localgem.tuning.wire import (
    TUNED_MODEL_TYPE,
    CreateTunedModelMetadata,
    Hyperparameters,
    ListTunedModelsResponse,
    TunedModel,
    TuningSnapshot,
    TuningTask,
)
from localgem.types.field_mask import update_paths
from localgem.types.paging import paginate
from localgem.types.permissions import ListPermissionsResponse, Permission
from localgem.types.status import Status
from localgem.types.wire import rfc3339

Clock = Callable[[], datetime]

TUNED_MODEL_ID = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?")
#: Google's defaults for its tuning (epochs, batch size, learning rate).
DEFAULT_EPOCHS, DEFAULT_BATCH_SIZE, DEFAULT_LEARNING_RATE = 5, 4, 0.001
MAX_EPOCHS, MAX_BATCH_SIZE = 100, 64
MAX_DISPLAY_NAME = 40
UPDATABLE = ("display_name", "description", "temperature", "top_p", "top_k")
_CODE = re.compile(r"^([A-Z_]+): ")
_LEADING_NON_LETTERS = re.compile(r"^[^A-Za-z]+")


@dataclass(frozen=True)
class TuningLimits:
    min_examples: int = 10
    max_examples: int = 10_000
    max_example_tokens: int = 2048


@dataclass(frozen=True)
class TunedTarget:
    """What serving a tuned model takes: its base model (with the tuned model's defaults) and its adapter."""

    entry: ModelEntry
    adapter: str
    name: str


class TuningService:
    def __init__(
        self,
        repository: TunedModelRepository,
        registry: ModelRegistry,
        prompts: Prompts,
        blobs: BlobStore,
        runner: Runner,
        clock: Clock,
        data_dir: Path,
        limits: TuningLimits = TuningLimits(),
    ) -> None:
        self._repo = repository
        self._registry = registry
        self._prompts = prompts
        self._blobs = blobs
        self._runner = runner
        self._clock = clock
        self._data_dir = data_dir
        self._limits = limits
        self._grants = Grants(repository, "tunedModels", clock)

    # -- tunedModels ----------------------------------------------------------------------------

    async def create(self, project: str, body: TunedModel, tuned_model_id: str | None) -> Operation:
        if body.tuned_model_source is not None and body.tuned_model_source.tuned_model:
            raise errors.invalid_field(
                "tuned_model_source",
                "Tuning from another tuned model is not supported here: set base_model (the source's base model) "
                "and train on all the examples.",
            )
        if not body.base_model:
            raise errors.invalid_field("base_model", "base_model is required: the model to tune, e.g. models/<id>.")
        entry = self._registry.resolve(body.base_model, "createTunedModel")
        await self._check_base(entry)
        if body.display_name is not None and len(body.display_name) > MAX_DISPLAY_NAME:
            raise errors.invalid_field("display_name", f"display_name may have at most {MAX_DISPLAY_NAME} characters.")
        defaults = _defaults(body, entry)
        hyper = _hyperparameters(body.tuning_task.hyperparameters if body.tuning_task else None)
        examples = self._examples(body.tuning_task)
        await tokenized(self._prompts, project, entry, examples, self._limits.max_example_tokens)
        model_id = _model_id(tuned_model_id, body.display_name)
        now = self._clock()
        record = TunedModelRecord(
            id=model_id,
            project=project,
            display_name=body.display_name,
            description=body.description,
            base_model=entry.name,
            source_model=None,
            defaults=json.dumps(defaults),
            hyperparameters=json.dumps(hyper),
            examples=json.dumps(examples),
            state=CREATING,
            operation_id=names.new_id(),
            total_steps=math.ceil(len(examples) / hyper["batch_size"]) * hyper["epoch_count"],
            create_time=now,
            update_time=now,
        )
        try:
            await self._repo.add(record)
        except Exists:
            raise errors.AlreadyExists(f"Tuned model tunedModels/{model_id} already exists.") from None
        self._runner.added()
        return self._operation(record)

    async def get(self, project: str, name: str) -> TunedModel:
        return self._wire((await self._model(project, name, "READER"))[0])

    async def list(
        self, project: str, page_size: int | None, page_token: str | None, filter_: str | None
    ) -> ListTunedModelsResponse:
        records = await self._repo.visible(project)
        if filter_:
            records = _filtered(records, filter_, project, await self._repo.readers())
        page, token = paginate(records, page_size, page_token, default_size=10, max_size=1000)
        return ListTunedModelsResponse(tuned_models=[self._wire(r) for r in page] or None, next_page_token=token)

    async def patch(self, project: str, name: str, body: TunedModel, update_mask: str | None) -> TunedModel:
        record, _ = await self._model(project, name, "OWNER")
        paths = update_paths(
            update_mask, body, UPDATABLE, f"Only these fields of a TunedModel can be updated: {', '.join(UPDATABLE)}."
        )
        changes: dict[str, Any] = {}
        if "display_name" in paths:
            if body.display_name is not None and len(body.display_name) > MAX_DISPLAY_NAME:
                raise errors.invalid_field(
                    "display_name", f"display_name may have at most {MAX_DISPLAY_NAME} characters."
                )
            changes["display_name"] = body.display_name
        if "description" in paths:
            changes["description"] = body.description
        defaults = json.loads(record.defaults)
        if paths & {"temperature", "top_p", "top_k"}:
            entry = self._registry.resolve(record.base_model, "generateContent")
            given = {key: getattr(body, key) for key in ("temperature", "top_p", "top_k") if key in paths}
            merged = {**defaults, **{k: v for k, v in given.items() if v is not None}}
            defaults = _checked_defaults(merged, entry)
            changes["defaults"] = json.dumps(defaults)
        await self._repo.update(record.id, changes, self._clock())
        return await self.get(project, name)

    async def delete(self, project: str, name: str) -> None:
        record, _ = await self._model(project, name, "OWNER")
        if record.state == CREATING:
            await self._runner.cancel("tune", record.project, record.operation_id)
        await self._repo.remove(record.id, self._blobs.delete)

    async def transfer_ownership(self, project: str, name: str, email_address: str | None) -> None:
        record, _ = await self._model(project, name, "OWNER")
        if not email_address:
            raise errors.invalid_field("email_address", "email_address is required: the new owner.")
        await self._repo.transfer(record.id, project_of(email_address), self._clock())

    # -- serving --------------------------------------------------------------------------------

    async def target(self, project: str, name: str, method: str) -> TunedTarget:
        """The base model (with this tuned model's defaults) and adapter a request to ``name`` runs on."""
        record, _ = await self._model(project, name, "READER")
        if record.state != ACTIVE or record.adapter is None:
            state = "still being tuned" if record.state == CREATING else "failed to tune"
            raise errors.FailedPrecondition(
                f"tunedModels/{record.id} {state} (state {record.state}): it cannot serve yet."
            )
        entry = self._registry.resolve(record.base_model, method)
        defaults = json.loads(record.defaults)
        config = entry.config.model_copy(update={k: v for k, v in defaults.items() if v is not None})
        try:
            path = await self._blobs.local_path(record.adapter)
        except FileNotFoundError:
            raise errors.FailedPrecondition(
                f"The adapter of tunedModels/{record.id} is missing from the blob store."
            ) from None
        return TunedTarget(ModelEntry.from_config(config), str(path), f"tunedModels/{record.id}")

    # -- permissions ----------------------------------------------------------------------------

    async def create_permission(self, project: str, name: str, body: Permission) -> Permission:
        record, role = await self._model(project, name, "WRITER")
        return await self._grants.create(role, record.id, body)

    async def get_permission(self, project: str, name: str, permission: str) -> Permission:
        record, _ = await self._model(project, name, "READER")
        return await self._grants.get(record.id, permission)

    async def list_permissions(
        self, project: str, name: str, page_size: int | None, page_token: str | None
    ) -> ListPermissionsResponse:
        record, _ = await self._model(project, name, "READER")
        return await self._grants.list(record.id, page_size, page_token)

    async def update_permission(
        self, project: str, name: str, permission: str, body: Permission, update_mask: str | None
    ) -> Permission:
        record, _ = await self._model(project, name, "OWNER")
        return await self._grants.update(record.id, permission, body, update_mask)

    async def delete_permission(self, project: str, name: str, permission: str) -> None:
        record, role = await self._model(project, name, "WRITER")
        await self._grants.delete(role, record.id, permission)

    # -- operations (``tunedModels/*/operations``, see operations.service.OperationSource) ----------

    async def operation(self, project: str, name: str) -> Operation:
        return self._operation(await self._operation_of(project, name, "READER"))

    async def operations(
        self, project: str, parent: str, page_size: int | None, page_token: str | None
    ) -> ListOperationsResponse:
        record, _ = await self._model(project, parent.removesuffix("/operations"), "READER")
        page, token = paginate([record], page_size, page_token, default_size=10, max_size=100)
        return ListOperationsResponse(operations=[self._operation(r) for r in page], next_page_token=token)

    async def cancel(self, project: str, name: str) -> None:
        record = await self._operation_of(project, name, "OWNER")
        if record.state != CREATING:
            raise errors.FailedPrecondition(f"Operation {name} has ended already ({record.state}).")
        await self._runner.cancel("tune", record.project, record.operation_id)

    # -- helpers --------------------------------------------------------------------------------

    async def _model(self, project: str, name: str, need: str) -> tuple[TunedModelRecord, str]:
        model_id = names.lookup_id(name, "tunedModels", _not_found)
        record = await self._repo.get(model_id)
        role = await self._grants.require(
            project, record.project if record else None, model_id, need, _not_found(model_id)
        )
        assert record is not None
        return record, role

    async def _operation_of(self, project: str, name: str, need: str) -> TunedModelRecord:
        """The tuned model whose tuning operation ``name`` (``tunedModels/{id}/operations/{op}``) is."""
        model, _, operation_id = name.partition("/operations/")
        record, _ = await self._model(project, model, need)
        if operation_id != record.operation_id:
            raise errors.NotFound(f"Operation {name} not found.")
        return record

    async def _check_base(self, entry: ModelEntry) -> None:
        if not entry.chats or entry.config.engine != "llama.cpp":
            raise errors.invalid_field(
                "base_model", f"{entry.name} cannot be tuned here: tuning takes a llama.cpp (GGUF) text model."
            )
        weights = entry.weights(self._data_dir)
        try:
            architecture, _, _ = await asyncio.to_thread(base_shape, weights)
        except (ValueError, OSError) as exc:
            raise errors.invalid_field("base_model", f"The weights of {entry.name} cannot be read: {exc}") from None
        if architecture not in ARCHITECTURES:
            raise errors.invalid_field(
                "base_model",
                f"{entry.name} is a {architecture} model; tuning takes {', '.join(sorted(ARCHITECTURES))} models.",
            )

    def _examples(self, task: TuningTask | None) -> list[tuple[str, str]]:
        given = task.training_data.examples if task and task.training_data and task.training_data.examples else None
        examples = given.examples if given is not None else None
        if not examples:
            raise errors.invalid_field(
                "tuning_task.training_data",
                "No training data: put the examples in tuningTask.trainingData.examples.examples[] as "
                "{textInput, output} pairs. (google-genai's tunings.tune leaves them out of its request to the "
                "Gemini API: pass them with config=CreateTuningJobConfig(http_options=HttpOptions(extra_body="
                "{'tuningTask': {'trainingData': {'examples': {'examples': [...]}}}})).)",
            )
        limits = self._limits
        if len(examples) < limits.min_examples:
            raise errors.invalid_field(
                EXAMPLES_FIELD, f"At least {limits.min_examples} training examples are required; got {len(examples)}."
            )
        if len(examples) > limits.max_examples:
            raise errors.invalid_field(
                EXAMPLES_FIELD, f"At most {limits.max_examples} training examples are allowed; got {len(examples)}."
            )
        pairs = []
        for i, example in enumerate(examples):
            if not example.text_input or not example.text_input.strip():
                raise errors.invalid_field(f"{EXAMPLES_FIELD}[{i}].text_input", f"Example {i} has an empty textInput.")
            if not example.output or not example.output.strip():
                raise errors.invalid_field(f"{EXAMPLES_FIELD}[{i}].output", f"Example {i} has an empty output.")
            pairs.append((example.text_input, example.output))
        return pairs

    def _wire(self, record: TunedModelRecord) -> TunedModel:
        defaults = json.loads(record.defaults)
        hyper = json.loads(record.hyperparameters)
        return TunedModel(
            name=f"tunedModels/{record.id}",
            base_model=record.base_model,
            display_name=record.display_name,
            description=record.description,
            temperature=defaults.get("temperature"),
            top_p=defaults.get("top_p"),
            top_k=defaults.get("top_k"),
            state=record.state,
            create_time=rfc3339(record.create_time),
            update_time=rfc3339(record.update_time),
            tuning_task=TuningTask(
                start_time=rfc3339(record.start_time) if record.start_time else None,
                complete_time=rfc3339(record.complete_time) if record.complete_time else None,
                snapshots=_snapshots(record) or None,
                hyperparameters=Hyperparameters(
                    epoch_count=hyper["epoch_count"],
                    batch_size=hyper["batch_size"],
                    learning_rate=hyper["learning_rate"],
                ),
            ),
        )

    def _operation(self, record: TunedModelRecord) -> Operation:
        snapshots = _snapshots(record)
        completed = len(snapshots) if record.state != ACTIVE else record.total_steps
        metadata = CreateTunedModelMetadata(
            tuned_model=f"tunedModels/{record.id}",
            total_steps=record.total_steps,
            completed_steps=completed,
            completed_percent=round(100.0 * completed / record.total_steps, 2) if record.total_steps else 0.0,
            snapshots=snapshots or None,
        )
        operation = Operation[CreateTunedModelMetadata, TunedModel](
            name=f"tunedModels/{record.id}/operations/{record.operation_id}", metadata=metadata
        )
        if record.state == ACTIVE:
            operation.done = True
            operation.response = self._wire(record).model_copy(update={"type_": TUNED_MODEL_TYPE})
        elif record.state == FAILED:
            operation.done = True
            operation.error = _status(record.error or "Tuning failed.")
        return operation


def _not_found(model_id: str) -> errors.NotFound:
    return errors.NotFound(f"Tuned model tunedModels/{model_id[:100]} does not exist.")


def _model_id(given: str | None, display_name: str | None) -> str:
    if given is None:
        # A tuned model's id starts with a letter: the name's slug from its first letter on, else a random id
        # whose first (random) character becomes one.
        model_id = names.id_from(_LEADING_NON_LETTERS.sub("", display_name or ""))
        return model_id if model_id[0].isalpha() else f"m{model_id[1:]}"
    if not TUNED_MODEL_ID.fullmatch(given):
        raise errors.invalid_field(
            "tuned_model_id",
            "tunedModelId must be 1 to 40 characters of lowercase letters, digits and dashes, start with a letter "
            "and not end with a dash.",
        )
    return given


def _defaults(body: TunedModel, entry: ModelEntry) -> dict[str, Any]:
    given = {"temperature": body.temperature, "top_p": body.top_p, "top_k": body.top_k}
    base = {"temperature": entry.config.temperature, "top_p": entry.config.top_p, "top_k": entry.config.top_k}
    return _checked_defaults({k: given[k] if given[k] is not None else base[k] for k in given}, entry)


def _checked_defaults(values: dict[str, Any], entry: ModelEntry) -> dict[str, Any]:
    if not 0 <= values["temperature"] <= entry.config.max_temperature:
        raise errors.invalid_field(
            "temperature",
            f"temperature must be between 0 and {entry.config.max_temperature}; got {values['temperature']}.",
        )
    if not 0 <= values["top_p"] <= 1:
        raise errors.invalid_field("top_p", f"top_p must be between 0 and 1; got {values['top_p']}.")
    if values["top_k"] < 0:
        raise errors.invalid_field("top_k", f"top_k must not be negative; got {values['top_k']}.")
    return values


def _hyperparameters(given: Hyperparameters | None) -> dict[str, Any]:
    given = given or Hyperparameters()
    where = "tuning_task.hyperparameters"
    epochs = DEFAULT_EPOCHS if given.epoch_count is None else given.epoch_count
    if not 1 <= epochs <= MAX_EPOCHS:
        raise errors.invalid_field(
            f"{where}.epoch_count", f"epoch_count must be between 1 and {MAX_EPOCHS}; got {epochs}."
        )
    batch = DEFAULT_BATCH_SIZE if given.batch_size is None else given.batch_size
    if not 1 <= batch <= MAX_BATCH_SIZE:
        raise errors.invalid_field(
            f"{where}.batch_size", f"batch_size must be between 1 and {MAX_BATCH_SIZE}; got {batch}."
        )
    if given.learning_rate is not None and given.learning_rate_multiplier is not None:
        raise errors.invalid_field(f"{where}.learning_rate", "Set learning_rate or learning_rate_multiplier, not both.")
    rate = DEFAULT_LEARNING_RATE
    if given.learning_rate is not None:
        if not 0 < given.learning_rate <= 1:
            raise errors.invalid_field(
                f"{where}.learning_rate", f"learning_rate must be above 0 and at most 1; got {given.learning_rate}."
            )
        rate = given.learning_rate
    elif given.learning_rate_multiplier is not None:
        if not 0 < given.learning_rate_multiplier <= 10:
            raise errors.invalid_field(
                f"{where}.learning_rate_multiplier",
                f"learning_rate_multiplier must be above 0 and at most 10; got {given.learning_rate_multiplier}.",
            )
        rate = DEFAULT_LEARNING_RATE * given.learning_rate_multiplier
    return {"epoch_count": epochs, "batch_size": batch, "learning_rate": rate}


def _snapshots(record: TunedModelRecord) -> list[TuningSnapshot]:
    return [TuningSnapshot(**s) for s in json.loads(record.snapshots)]


def _status(error: str) -> Status:
    """A stored reason (``CODE: message``) as the operation's error."""
    codes = {"CANCELLED": 1, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "FAILED_PRECONDITION": 9, "INTERNAL": 13}
    found = _CODE.match(error)
    if found and found.group(1) in codes:
        return Status(code=codes[found.group(1)], message=error[found.end() :])
    return Status(code=13, message=error)


def _filtered(
    records: list[TunedModelRecord], filter_: str, project: str, readers: dict[str, list[str]]
) -> list[TunedModelRecord]:
    """Google's tunedModels filter: ``owner:me``, ``writers:me``, ``readers:me``, ``readers:everyone``, and
    words matched against the display name and description (all terms must hold)."""
    kept = records
    for term in filter_.split():
        lowered = term.lower()
        if lowered == "owner:me":
            kept = [r for r in kept if r.project == project]
        elif lowered in ("readers:me", "writers:me"):
            kept = [r for r in kept if r.project == project or project in readers.get(r.id, [])]
        elif lowered == "readers:everyone":
            kept = [r for r in kept if "*" in readers.get(r.id, [])]
        elif ":" in term:
            raise errors.invalid_field(
                "filter", f"Unknown filter {term!r}: use owner:me, readers:me, writers:me, readers:everyone or words."
            )
        else:
            kept = [r for r in kept if lowered in f"{r.display_name or ''} {r.description or ''}".lower()]
    return kept

"""TunedModel, its tuning task, CreateTunedModelMetadata and the tunedModels requests and responses, as on the
wire. Output-only fields a client echoes back (``name``, ``state``, times) are accepted and ignored."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from localgem.types.wire import Int32, Int64, WireModel

TUNED_MODEL_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.TunedModel"
METADATA_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.CreateTunedModelMetadata"


class TuningExample(WireModel):
    text_input: str | None = None
    output: str | None = None


class TuningExamples(WireModel):
    examples: list[TuningExample] | None = None


class Dataset(WireModel):
    examples: TuningExamples | None = None


class Hyperparameters(WireModel):
    learning_rate: float | None = None
    learning_rate_multiplier: float | None = None
    epoch_count: Int32 | None = None
    batch_size: Int32 | None = None


class TuningSnapshot(WireModel):
    step: Int32 | None = None
    epoch: Int32 | None = None
    mean_loss: float | None = None
    compute_time: str | None = None


class TuningTask(WireModel):
    start_time: str | None = None
    complete_time: str | None = None
    snapshots: list[TuningSnapshot] | None = None
    training_data: Dataset | None = None  # input only: never written back
    hyperparameters: Hyperparameters | None = None


class TunedModelSource(WireModel):
    tuned_model: str | None = None
    base_model: str | None = None


class TunedModel(WireModel):
    type_: str | None = Field(None, alias="@type")  # only as an Operation's response
    name: str | None = None
    base_model: str | None = None
    tuned_model_source: TunedModelSource | None = None
    display_name: str | None = None
    description: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: Int32 | None = None
    state: Any = None  # output only (a client may echo it, as a name or a number)
    create_time: str | None = None
    update_time: str | None = None
    tuning_task: TuningTask | None = None
    reader_project_numbers: list[Int64] | None = None


class CreateTunedModelMetadata(WireModel):
    type_: str = Field(METADATA_TYPE, alias="@type")
    tuned_model: str
    total_steps: Int32
    completed_steps: Int32
    completed_percent: float
    snapshots: list[TuningSnapshot] | None = None


class ListTunedModelsResponse(WireModel):
    tuned_models: list[TunedModel] | None = None
    next_page_token: str | None = None


class TransferOwnershipRequest(WireModel):
    email_address: str | None = None

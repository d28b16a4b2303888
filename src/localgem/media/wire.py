"""PredictRequest / PredictResponse (Imagen), PredictLongRunningRequest and its response (Veo), GeneratedFile."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from localgem.types.status import Status
from localgem.types.wire import WireModel

PREDICT_LONG_RUNNING_RESPONSE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
PREDICT_LONG_RUNNING_METADATA = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningMetadata"


class PredictRequest(WireModel):
    model: str | None = None
    instances: list[Any] | None = None
    parameters: Any = None
    labels: dict[str, str] | None = None  # Vertex AI's


class PredictResponse(WireModel):
    predictions: list[dict[str, Any]]


class FetchPredictOperationRequest(WireModel):
    """Vertex AI's ``:fetchPredictOperation`` (how the Python SDK polls a video operation there)."""

    operation_name: str | None = None


class Video(WireModel):
    uri: str | None = None
    encoded_video: str | None = None  # base64, only for Vertex AI's shape (``bytesBase64Encoded``)
    encoding: str | None = None


class GeneratedSample(WireModel):
    video: Video


class GenerateVideoResponse(WireModel):
    generated_samples: list[GeneratedSample] = Field(default_factory=list)
    rai_media_filtered_count: int | None = None
    rai_media_filtered_reasons: list[str] | None = None


class PredictLongRunningResponse(WireModel):
    type_: str = Field(PREDICT_LONG_RUNNING_RESPONSE, alias="@type")
    generate_video_response: GenerateVideoResponse | None = None


class PredictLongRunningMetadata(WireModel):
    """localgem's progress report (Google sends none): the generatedFile made and denoising steps done."""

    type_: str = Field(PREDICT_LONG_RUNNING_METADATA, alias="@type")
    generated_file: str | None = None
    model: str | None = None
    completed_steps: int | None = None
    total_steps: int | None = None
    create_time: str | None = None
    update_time: str | None = None


class GeneratedFile(WireModel):
    name: str
    mime_type: str | None = None
    state: str | None = None
    error: Status | None = None
    # localgem's: the Files API file that holds the bytes once GENERATED, and when both expire.
    file: str | None = None
    expire_time: str | None = None


class ListGeneratedFilesResponse(WireModel):
    generated_files: list[GeneratedFile] = Field(default_factory=list)
    next_page_token: str | None = None

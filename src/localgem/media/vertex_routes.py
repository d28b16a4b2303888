"""The Vertex AI paths of the same methods, for the Python SDK: google-genai's ``generate_images`` and
``generate_videos`` run only in Vertex AI mode (``Client(vertexai=True, api_key=..., http_options={"base_url":
...})`` — express mode), which calls ``/v1beta1/[projects/P/locations/L/]publishers/google/models/M:predict``,
``…:predictLongRunning`` and polls with ``…:fetchPredictOperation``. Same services, Vertex AI's shapes: a video
operation's response carries the video's bytes (``videos[].bytesBase64Encoded``; Vertex would name a Cloud
Storage object)."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Depends, Request

from localgem import errors
from localgem.api.context import project, read_message, require_api_key, services, unless_disconnected
from localgem.media.wire import FetchPredictOperationRequest, PredictRequest

VERSIONS = ("v1beta1", "v1")
PREFIXES = ("", "projects/{vertex_project}/locations/{location}/")
VIDEO_RESPONSE = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"

router = APIRouter(dependencies=[Depends(require_api_key)])


async def predict(request: Request, model: str) -> dict:
    body = await read_message(request, PredictRequest)
    answer = services(request).media.images.predict(model, body)
    return (await unless_disconnected(request, answer)).to_wire()


async def predict_long_running(request: Request, model: str) -> dict:
    body = await read_message(request, PredictRequest)
    operation = await services(request).media.videos.start(project(request), model, body)
    return {"name": _vertex_name(request, model, operation.name)}


async def fetch_predict_operation(request: Request, model: str) -> dict:
    body = await read_message(request, FetchPredictOperationRequest)
    if not body.operation_name or "/operations/" not in body.operation_name:
        raise errors.invalid_field("operationName", "operationName is required.")
    operation_id = body.operation_name.rsplit("/operations/", 1)[1]
    found = services(request)
    videos = found.media.videos
    gemini = await videos.get_operation(project(request), f"models/{model}/operations/{operation_id}")
    answer: dict = {"name": body.operation_name, "done": gemini.done}
    if gemini.error is not None:
        answer["error"] = gemini.error.to_wire()
    elif gemini.response is not None:
        samples = gemini.response.generate_video_response.generated_samples
        videos_out = []
        for sample in samples:
            _, chunks = await found.files.service.content(project(request), sample.video.uri)
            data = b"".join([chunk async for chunk in chunks])
            videos_out.append({"bytesBase64Encoded": base64.b64encode(data).decode("ascii"), "mimeType": "video/mp4"})
        answer["response"] = {"@type": VIDEO_RESPONSE, "videos": videos_out, "raiMediaFilteredCount": 0}
    return answer


def _vertex_name(request: Request, model: str, gemini_name: str) -> str:
    params = request.path_params
    prefix = (
        f"projects/{params['vertex_project']}/locations/{params['location']}/" if "vertex_project" in params else ""
    )
    return f"{prefix}publishers/google/models/{model}/operations/{gemini_name.rsplit('/', 1)[1]}"


for _version in VERSIONS:
    for _prefix in PREFIXES:
        _base = f"/{_version}/{_prefix}publishers/google/models/{{model}}"
        router.add_api_route(f"{_base}:predict", predict, methods=["POST"])
        router.add_api_route(f"{_base}:predictLongRunning", predict_long_running, methods=["POST"])
        router.add_api_route(f"{_base}:fetchPredictOperation", fetch_predict_operation, methods=["POST"])

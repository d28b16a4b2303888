"""Image and video generation through the real HTTP stack: tiny random-weight diffusers pipelines (real loading
and running code), the chat model scripted by the fake engine. Imagen-style predict, Gemini IMAGE output (with the
SDK), Veo-style predictLongRunning operations and generatedFiles, the image worker's queue and cancellation, and a
video worker that dies."""

from __future__ import annotations

import base64
import io
import os
import signal
import threading
import time
from collections.abc import Iterator

import av
import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from PIL import Image

from tests.conftest import API_KEY, OTHER_KEY, start_fake_server
from tests.fakes import FakeEngine
from tests.server import RunningServer
from tests.unit.test_hostile_requests import Connection, google_error, hostile_bodies

HEADERS = {"x-goog-api-key": API_KEY}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_pipelines: list[dict]) -> Iterator[RunningServer]:
    image, video = tiny_pipelines
    slow = [
        {**image, "id": "slow-image", "steps": 400},
        {**video, "id": "slow-video", "steps": 400},
    ]
    running = start_fake_server(
        tmp_path_factory.mktemp("data"),
        FakeEngine(),
        models=[*tiny_pipelines, *slow],
        default_image_model="tiny-image",
        default_video_model="tiny-video",
        image_queue=1,
    )
    yield running
    running.stop()


def post(server: RunningServer, path: str, body: dict, key: str = API_KEY, timeout: float = 120) -> httpx.Response:
    return httpx.post(f"{server.url}/v1beta/{path}", json=body, headers={"x-goog-api-key": key}, timeout=timeout)


def get(server: RunningServer, path: str, key: str = API_KEY) -> httpx.Response:
    return httpx.get(f"{server.url}/v1beta/{path}", headers={"x-goog-api-key": key}, timeout=30)


def decoded(prediction: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(prediction["bytesBase64Encoded"])))


def png(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def test_predict_draws_the_images_asked_for(server: RunningServer) -> None:
    body = {
        "instances": [{"prompt": "a lighthouse"}],
        "parameters": {"sampleCount": 2, "aspectRatio": "16:9", "seed": 7},
    }
    first = post(server, "models/imagen-4.0-generate-001:predict", body)
    assert first.status_code == 200, first.text
    predictions = first.json()["predictions"]
    assert [set(p) for p in predictions] == [{"bytesBase64Encoded", "mimeType"}] * 2
    images = [decoded(p) for p in predictions]
    assert all(p["mimeType"] == "image/png" and i.format == "PNG" for p, i in zip(predictions, images, strict=True))
    assert [i.size for i in images] == [(88, 48)] * 2  # 16:9 with the area of the model's 64×64
    assert predictions[0] != predictions[1]  # two samples, two seeds
    again = post(server, "models/tiny-image:predict", body).json()["predictions"]
    assert again == predictions  # the same seed draws the same images
    other = post(server, "models/tiny-image:predict", {**body, "parameters": {"seed": 8}}).json()["predictions"]
    assert len(other) == 1 and other[0] != predictions[0] and decoded(other[0]).size == (64, 64)
    jpeg = post(
        server,
        "models/tiny-image:predict",
        {
            "instances": [{"prompt": "a lighthouse"}],
            "parameters": {
                "aspectRatio": "3:4",
                "outputOptions": {"mimeType": "image/jpeg"},
                "negativePrompt": "fog",
                "personGeneration": "allow_adult",
                "enhancePrompt": False,
            },
        },
    ).json()["predictions"]
    assert jpeg[0]["mimeType"] == "image/jpeg" and decoded(jpeg[0]).format == "JPEG"
    assert decoded(jpeg[0]).size == (56, 72)


def test_predict_edits_an_image_it_is_given(server: RunningServer) -> None:
    source = base64.b64encode(png(64, 64, (200, 30, 30))).decode()
    body = {
        "instances": [{"prompt": "make it blue", "image": {"bytesBase64Encoded": source}}],
        "parameters": {"seed": 1},
    }
    response = post(server, "models/tiny-image:predict", body)
    assert response.status_code == 200, response.text
    edited = decoded(response.json()["predictions"][0])
    assert edited.size == (64, 64)
    drawn = decoded(
        post(server, "models/tiny-image:predict", {**body, "instances": [{"prompt": "make it blue"}]}).json()[
            "predictions"
        ][0]
    )
    assert edited.tobytes() != drawn.tobytes()  # the edit started from the image, not from noise


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("models/tiny-image:predict", {}, 400, "instances is required"),
        ("models/tiny-image:predict", {"instances": [{"prompt": " "}]}, 400, "instances[0].prompt is required"),
        ("models/tiny-image:predict", {"instances": [{"text": "x"}]}, 400, "prompt is required"),
        ("models/tiny-image:predict", {"instances": ["x"]}, 400, "instances[0] must be a JSON object"),
        (
            "models/tiny-image:predict",
            {"instances": [{"prompt": "x"}], "parameters": {"sampleCount": 9}},
            400,
            "from 1 to 4",
        ),
        (
            "models/tiny-image:predict",
            {"instances": [{"prompt": "x"}], "parameters": {"aspectRatio": "7:3"}},
            400,
            "aspectRatio",
        ),
        ("models/tiny-image:predict", {"instances": [{"prompt": "x"}], "parameters": {"seed": -1}}, 400, "seed"),
        (
            "models/tiny-image:predict",
            {"instances": [{"prompt": "x"}], "parameters": {"personGeneration": "all"}},
            400,
            "personGeneration",
        ),
        (
            "models/tiny-image:predict",
            {"instances": [{"prompt": "x"}], "parameters": 3},
            400,
            "parameters must be a JSON object",
        ),
        (
            "models/tiny-image:predict",
            {"instances": [{"prompt": "x", "image": {"bytesBase64Encoded": "%%"}}]},
            400,
            "base64",
        ),
        (
            "models/tiny-image:predict",
            {"instances": [{"prompt": "x", "image": {"bytesBase64Encoded": "aGVsbG8="}}]},
            400,
            "could not be read",
        ),
        (
            "models/tiny-image:predict",
            {"instances": [{"prompt": "x", "image": {"gcsUri": "gs://b/o"}}]},
            400,
            "Cloud Storage",
        ),
        ("models/tiny-image:predict", {"instances": [{"prompt": "x"}], "bogus": 1}, 400, "bogus"),
        ("models/tiny-image:generateContent", {"contents": [{"parts": [{"text": "x"}]}]}, 400, "is an image model"),
        ("models/gemini-2.5-flash:predict", {"instances": [{"prompt": "x"}]}, 400, "is a generative model"),
        ("models/tiny-video:predict", {"instances": [{"prompt": "x"}]}, 400, "is a video model"),
        ("models/no-such-model:predict", {"instances": [{"prompt": "x"}]}, 404, "not found"),
        ("models/veo-3.0-generate-001:predictLongRunning", {}, 400, "instances must hold exactly one"),
        ("models/tiny-video:predictLongRunning", {"instances": [{"prompt": "x", "image": {}}]}, 400, "from text only"),
        (
            "models/tiny-video:predictLongRunning",
            {"instances": [{"prompt": "x"}], "parameters": {"durationSeconds": 0}},
            400,
            "durationSeconds",
        ),
        (
            "models/tiny-video:predictLongRunning",
            {"instances": [{"prompt": "x"}], "parameters": {"resolution": "8k"}},
            400,
            "resolution",
        ),
        ("models/tiny-image:predictLongRunning", {"instances": [{"prompt": "x"}]}, 400, "is an image model"),
    ],
)
def test_bad_requests_are_told_what_is_wrong(
    server: RunningServer, path: str, body: dict, status: int, says: str
) -> None:
    response = post(server, path, body)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]["message"]


def test_without_image_or_video_models_the_400_names_the_setting(fake_server: RunningServer) -> None:
    imagen = post(fake_server, "models/imagen-4.0-generate-001:predict", {"instances": [{"prompt": "x"}]})
    assert imagen.status_code == 400 and "default_image_model" in imagen.json()["error"]["message"]
    veo = post(fake_server, "models/veo-3.0-generate-001:predictLongRunning", {"instances": [{"prompt": "x"}]})
    assert veo.status_code == 400 and "default_video_model" in veo.json()["error"]["message"]
    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=fake_server.url))
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(
            model="gemini-2.5-flash-image",
            contents="a cat",
            config=types.GenerateContentConfig(response_modalities=["IMAGE"]),
        )
    assert caught.value.code == 400 and "default_image_model" in caught.value.message


def test_gemini_image_output_with_the_sdk(server: RunningServer) -> None:
    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
    only = client.models.generate_content(
        model="gemini-2.5-flash-image",
        contents="A red kite over the sea",
        config=types.GenerateContentConfig(
            response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio="9:16"), seed=5
        ),
    )
    (part,) = only.candidates[0].content.parts
    assert part.inline_data.mime_type == "image/png"
    assert Image.open(io.BytesIO(part.inline_data.data)).size == (48, 88)
    usage = only.usage_metadata
    assert [(d.modality, d.token_count) for d in usage.candidates_tokens_details] == [("IMAGE", 1290)]
    assert usage.total_token_count == usage.prompt_token_count + 1290

    both = client.models.generate_content(
        model="gemini-2.5-flash-image",
        contents="A red kite over the sea",
        config=types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"], seed=5),
    )
    text, image = both.candidates[0].content.parts
    assert text.text and image.inline_data.mime_type == "image/png"
    assert [d.modality for d in both.usage_metadata.candidates_tokens_details] == ["TEXT", "IMAGE"]

    chunks = list(
        client.models.generate_content_stream(
            model="gemini-2.5-flash-image",
            contents="A red kite over the sea",
            config=types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"], seed=5),
        )
    )
    streamed = [p for c in chunks for p in (c.candidates[0].content.parts if c.candidates[0].content else [])]
    assert "".join(p.text for p in streamed if p.text) == text.text
    assert [p.inline_data.data for p in streamed if p.inline_data] == [image.inline_data.data]  # same seed, same image
    assert chunks[-1].candidates[0].content.parts[-1].inline_data is not None

    edit = client.models.generate_content(
        model="gemini-2.5-flash-image",
        contents=[types.Part.from_bytes(data=png(64, 64, (0, 90, 0)), mime_type="image/png"), "make it night"],
        config=types.GenerateContentConfig(response_modalities=["IMAGE"], seed=5),
    )
    assert Image.open(io.BytesIO(edit.candidates[0].content.parts[0].inline_data.data)).size == (64, 64)


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "5:1"}}, "aspectRatio"),
        ({"responseModalities": ["IMAGE"], "imageConfig": {"imageSize": "8K"}}, "imageSize"),
        ({"imageConfig": {"aspectRatio": "1:1"}}, "needs IMAGE"),
        ({"responseModalities": ["IMAGE", "AUDIO"]}, "cannot be combined"),
        ({"responseModalities": ["IMAGE"], "candidateCount": 2}, "one candidate"),
        ({"responseModalities": ["VIDEO"]}, "VIDEO is not supported"),
    ],
)
def test_image_output_400s(server: RunningServer, config: dict, says: str) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "a kite"}]}], "generationConfig": config}
    response = post(server, "models/gemini-2.5-flash:generateContent", body)
    assert response.status_code == 400 and says in response.json()["error"]["message"], response.text


def wait_done(server: RunningServer, name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        operation = get(server, name).json()
        if operation.get("done"):
            return operation
        time.sleep(0.2)
    raise AssertionError(f"{name} did not finish: {operation}")


def test_a_video_is_an_operation_then_an_mp4_file(server: RunningServer) -> None:
    started = post(
        server,
        "models/veo-3.0-generate-001:predictLongRunning",
        {"instances": [{"prompt": "waves"}], "parameters": {"seed": 3}},
    )
    assert started.status_code == 200, started.text
    operation = started.json()
    name = operation["name"]
    assert name.startswith("models/veo-3.0-generate-001/operations/") and operation["done"] is False
    generated = operation["metadata"]["generatedFile"]
    assert get(server, generated).json()["state"] == "GENERATING"
    done = wait_done(server, name)
    assert "error" not in done and done["metadata"]["completedSteps"] == 2
    assert done["response"]["@type"].endswith("PredictLongRunningResponse")
    (sample,) = done["response"]["generateVideoResponse"]["generatedSamples"]
    video = httpx.get(sample["video"]["uri"], headers=HEADERS, timeout=30)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(video=0))
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 88, 48)  # 16:9, Veo's default
        assert len(frames) == 8
    file_name = get(server, generated).json()["file"]
    assert get(server, file_name).json()["mimeType"] == "video/mp4"
    listed = get(server, "generatedFiles").json()["generatedFiles"]
    assert {"name": generated, "state": "GENERATED", "mimeType": "video/mp4"}.items() <= next(
        f for f in listed if f["name"] == generated
    ).items()
    operations = get(server, "models/veo-3.0-generate-001/operations").json()["operations"]
    assert [o["name"] for o in operations if o["name"] == name] == [name]
    by_file = get(server, f"{generated}/operations/{name.rsplit('/', 1)[1]}").json()
    assert by_file == done
    # Another project sees none of it.
    assert get(server, name, key=OTHER_KEY).status_code == 404
    assert get(server, generated, key=OTHER_KEY).status_code == 404
    assert get(server, "generatedFiles", key=OTHER_KEY).json().get("generatedFiles", []) == []


def running_worker(server: RunningServer, operation: dict, timeout: float = 60) -> int:
    generated = operation["metadata"]["generatedFile"].split("/")[1]
    workers = server.app.state.media.executor.workers
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = next((pid for (_, file_id), pid in workers.items() if file_id == generated), None)
        if pid is not None:
            return pid
        time.sleep(0.05)
    raise AssertionError("the video worker did not start")


def test_a_video_worker_that_dies_fails_its_operation_with_the_reason(server: RunningServer) -> None:
    operation = post(server, "models/slow-video:predictLongRunning", {"instances": [{"prompt": "rain"}]}).json()
    os.kill(running_worker(server, operation), signal.SIGKILL)
    done = wait_done(server, operation["name"])
    assert done["error"]["code"] == 13 and "killed by signal 9 (SIGKILL)" in done["error"]["message"]
    assert "response" not in done
    assert get(server, operation["metadata"]["generatedFile"]).json()["state"] == "FAILED"


def test_cancelling_a_video_stops_its_worker(server: RunningServer) -> None:
    operation = post(server, "models/slow-video:predictLongRunning", {"instances": [{"prompt": "snow"}]}).json()
    pid = running_worker(server, operation)
    assert post(server, f"{operation['name']}:cancel", {}).status_code == 200
    done = wait_done(server, operation["name"])
    assert done["error"]["code"] == 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:  # gone: no such file, or reaped between the open and the read (ESRCH)
        return False


def test_a_client_that_leaves_frees_the_image_worker_and_a_full_queue_is_503(server: RunningServer) -> None:
    slow = {"instances": [{"prompt": "a slow one"}]}

    gave_up: list[str] = []

    def leave_after(seconds: float) -> None:
        try:
            post(server, "models/slow-image:predict", slow, timeout=seconds)
        except httpx.ReadTimeout:
            gave_up.append("left")

    # One drawing and one waiting fill a worker of concurrency 1 and queue 1.
    clients = [threading.Thread(target=leave_after, args=(seconds,)) for seconds in (3.0, 2.0)]
    for client in clients:
        client.start()
        time.sleep(0.8)
    full = post(server, "models/tiny-image:predict", {"instances": [{"prompt": "x"}]})
    assert full.status_code == 503 and full.json()["error"]["status"] == "UNAVAILABLE"
    for client in clients:
        client.join()
    assert gave_up == ["left", "left"]
    started = time.monotonic()
    quick = post(server, "models/tiny-image:predict", {"instances": [{"prompt": "x"}]}, timeout=30)
    assert quick.status_code == 200
    assert time.monotonic() - started < 15  # 400 steps of the slow drawings would take far longer


@pytest.mark.parametrize(
    "path",
    [
        "/v1beta/models/tiny-image:predict",
        "/v1beta/models/tiny-video:predictLongRunning",
        "/v1beta1/publishers/google/models/tiny-image:predict",
        "/v1beta1/projects/p/locations/us-central1/publishers/google/models/tiny-video:predictLongRunning",
        "/v1beta1/publishers/google/models/tiny-video:fetchPredictOperation",
    ],
)
def test_hostile_bodies_are_4xx_and_the_connection_lives(server: RunningServer, path: str) -> None:
    conn = Connection(server.url)
    try:
        for field in ("instances", "parameters", "operationName"):
            for body in [
                *hostile_bodies(field),
                b'{"instances": [{"prompt": "x", "image": {"bytesBase64Encoded": 7}}]}',
            ]:
                status, _, data = conn.request("POST", path, body, {"Content-Type": "application/json"})
                assert 400 <= status < 500, (body[:80], status, data[:300])
                google_error(status, data)
        status, _, _ = conn.request("GET", "/v1beta/generatedFiles?pageToken=%ff")
        assert status == 400
        status, _, _ = conn.request("GET", "/v1beta/models/tiny-video/operations/nope")
        assert status == 404
    finally:
        conn.close()

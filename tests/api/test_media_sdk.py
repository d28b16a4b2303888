"""Image and video generation with the official Python SDK over a real socket, on the real chat model and tiny
random-weight diffusers pipelines. google-genai runs ``generate_images`` and ``generate_videos`` only in Vertex AI
mode (express mode: an API key and a base URL), so that is how it is called here; Gemini-mode IMAGE output is
``generate_content``."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import av
import pytest
from google import genai
from google.genai import types
from PIL import Image

from tests.conftest import API_KEY, start_real_server
from tests.server import RunningServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_pipelines: list[dict]) -> Iterator[RunningServer]:
    running = start_real_server(
        tmp_path_factory.mktemp("data"),
        models=tiny_pipelines,
        default_image_model="tiny-image",
        default_video_model="tiny-video",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def vertex(server: RunningServer) -> genai.Client:
    return genai.Client(vertexai=True, api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))


def test_generate_images(vertex: genai.Client) -> None:
    config = types.GenerateImagesConfig(
        number_of_images=2,
        aspect_ratio="4:3",
        seed=4,
        negative_prompt="rain",
        output_mime_type="image/jpeg",
        add_watermark=False,
        person_generation="ALLOW_ADULT",
        include_rai_reason=True,
    )
    response = vertex.models.generate_images(model="imagen-4.0-generate-001", prompt="A fox in snow", config=config)
    images = [Image.open(io.BytesIO(g.image.image_bytes)) for g in response.generated_images]
    assert [g.image.mime_type for g in response.generated_images] == ["image/jpeg"] * 2
    assert [(i.format, i.size) for i in images] == [("JPEG", (72, 56))] * 2
    again = vertex.models.generate_images(model="imagen-4.0-generate-001", prompt="A fox in snow", config=config)
    assert [g.image.image_bytes for g in again.generated_images] == [
        g.image.image_bytes for g in response.generated_images
    ]


def test_generate_videos_and_poll_with_operations_get(vertex: genai.Client) -> None:
    operation = vertex.models.generate_videos(
        model="veo-3.0-generate-001",
        source=types.GenerateVideosSource(prompt="A fox running"),
        config=types.GenerateVideosConfig(aspect_ratio="9:16", number_of_videos=1, seed=2, fps=8, duration_seconds=1),
    )
    assert operation.name.startswith("publishers/google/models/veo-3.0-generate-001/operations/")
    deadline = time.monotonic() + 120
    while not operation.done and time.monotonic() < deadline:
        time.sleep(0.3)
        operation = vertex.operations.get(operation)
    assert operation.done and operation.error is None
    (generated,) = operation.response.generated_videos
    assert generated.video.mime_type == "video/mp4"
    with av.open(io.BytesIO(generated.video.video_bytes)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (48, 88)
        assert len(list(container.decode(video=0))) == 8  # 1 second at 8 fps


def test_the_real_chat_model_answers_and_the_image_follows(server: RunningServer) -> None:
    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
    config = types.GenerateContentConfig(
        response_modalities=["TEXT", "IMAGE"], temperature=0, seed=11, max_output_tokens=16
    )
    response = client.models.generate_content(
        model="gemini-2.5-flash-image", contents="Draw a lighthouse.", config=config
    )
    *text, image = response.candidates[0].content.parts
    assert "".join(p.text for p in text).strip()
    assert Image.open(io.BytesIO(image.inline_data.data)).size == (64, 64)
    streamed = list(
        client.models.generate_content_stream(
            model="gemini-2.5-flash-image", contents="Draw a lighthouse.", config=config
        )
    )
    parts = [p for c in streamed if c.candidates and c.candidates[0].content for p in c.candidates[0].content.parts]
    assert "".join(p.text for p in parts if p.text) == "".join(p.text for p in text)
    assert [p.inline_data.data for p in parts if p.inline_data] == [image.inline_data.data]

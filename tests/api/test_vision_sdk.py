"""A vision model by path (GGUF weights + mmproj projector), through the real google-genai SDK: images and
video frames are seen (libmtmd encodes them; their embeddings are decoded in place of tokens), not read
by OCR. No vision weights exist on PyPI, so a tiny random-weight model is built for the test
(tests/tiny_vlm.py): its answers mean nothing, but they must depend on the picture, and be the same
alone, warm, streamed, from a file and from a cached content."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from localgem.app import create_app
from localgem.settings import load_settings
from tests.conftest import API_KEY, engine_of, trusting
from tests.server import RunningServer, start_server
from tests.tiny_vlm import picture

pytest.importorskip("gguf")

MODEL = "tiny-vision"
TEXT_ONLY = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def vision_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from tests.tiny_vlm import make_tiny_vlm

    weights, projector = make_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))
    settings = load_settings(
        environ={},
        data_dir=tmp_path_factory.mktemp("data"),
        api_keys=[API_KEY],
        models=[{"id": MODEL, "path": str(weights), "mmproj": str(projector), "context_length": 2048}],
        # The tiny model's heads are not whole q8_0 blocks: asked for q8_0 K, NativeModel caches its K as f16.
        cache_type_k="q8_0",
    )
    server = start_server(create_app(settings))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def vision(vision_server: RunningServer) -> genai.Client:
    return genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=vision_server.url))


def video(seconds: int, seed: int = 0) -> bytes:
    """An mp4 of ``seconds`` seconds, 4 frames a second, each second's frames one random picture."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(seconds):
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            for _ in range(4):
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


GREEDY = types.GenerateContentConfig(temperature=0, max_output_tokens=8, response_logprobs=True, logprobs=3)


def _first_logprobs(response: types.GenerateContentResponse) -> list[tuple[str, float]]:
    top = response.candidates[0].logprobs_result.top_candidates[0].candidates
    return [(c.token, round(c.log_probability, 4)) for c in top]


def _ask(client: genai.Client, data: bytes, mime: str = "image/png") -> types.GenerateContentResponse:
    return client.models.generate_content(
        model=MODEL, contents=[types.Part.from_bytes(data=data, mime_type=mime), "Describe it."], config=GREEDY
    )


def _details(usage) -> dict[str, int]:
    return {d.modality.value if hasattr(d.modality, "value") else d.modality: d.token_count for d in usage}


def test_the_answer_depends_on_the_picture(vision: genai.Client) -> None:
    first, second = _ask(vision, picture(1)), _ask(vision, picture(2))
    assert _first_logprobs(first) != _first_logprobs(second)
    # The same picture again (warm: its prefix and embeddings are reused) gives the same answer.
    again = _ask(vision, picture(1))
    assert again.text == first.text and _first_logprobs(again) == _first_logprobs(first)


def test_the_kept_state_is_named_as_computed_with_f16_k(vision: genai.Client, vision_server: RunningServer) -> None:
    _ask(vision, picture(4))  # the model is loaded
    # Asked for q8_0 K, the tiny model's context caches f16 K: what it keeps is named so (read by f16-K servers).
    assert engine_of(vision_server, MODEL)._native.attention_mode == "flash attention, bf16 V, dot products"


def test_image_tokens_are_counted_as_image(vision: genai.Client, vision_server: RunningServer) -> None:
    response = _ask(vision, picture(3))
    usage = response.usage_metadata
    details = _details(usage.prompt_tokens_details)
    assert details["IMAGE"] >= 16 and details["TEXT"] > 0
    assert sum(details.values()) == usage.prompt_token_count
    counted = vision.models.count_tokens(
        model=MODEL, contents=[types.Part.from_bytes(data=picture(3), mime_type="image/png"), "Describe it."]
    )
    assert counted.total_tokens == usage.prompt_token_count
    # Two pictures: twice the image tokens.
    two = vision.models.count_tokens(
        model=MODEL,
        contents=[
            types.Part.from_bytes(data=picture(3), mime_type="image/png"),
            types.Part.from_bytes(data=picture(4), mime_type="image/png"),
            "Describe it.",
        ],
    )
    assert two.total_tokens == counted.total_tokens + details["IMAGE"]


def test_streamed_and_alone_among_others_agree(vision: genai.Client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    alone = _ask(vision, picture(5))
    streamed = "".join(
        chunk.text or ""
        for chunk in vision.models.generate_content_stream(
            model=MODEL,
            contents=[types.Part.from_bytes(data=picture(5), mime_type="image/png"), "Describe it."],
            config=GREEDY,
        )
    )
    assert streamed == alone.text
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda seed: _ask(vision, picture(seed)).text, [5, 6, 5, 7]))
    assert answers[0] == answers[2] == alone.text


def test_an_uploaded_image_is_seen_like_an_inline_one(vision: genai.Client) -> None:
    data = picture(8, "image/jpeg")
    uploaded = vision.files.upload(file=io.BytesIO(data), config=types.UploadFileConfig(mime_type="image/jpeg"))
    deadline = time.monotonic() + 60
    while uploaded.state.name == "PROCESSING" and time.monotonic() < deadline:
        time.sleep(0.2)
        uploaded = vision.files.get(name=uploaded.name)
    assert uploaded.state.name == "ACTIVE"
    from_file = vision.models.generate_content(
        model=MODEL,
        contents=[types.Part.from_uri(file_uri=uploaded.uri, mime_type="image/jpeg"), "Describe it."],
        config=GREEDY,
    )
    inline = _ask(vision, data, "image/jpeg")
    assert from_file.text == inline.text and _first_logprobs(from_file) == _first_logprobs(inline)


def test_a_cached_content_with_an_image(vision: genai.Client) -> None:
    data = picture(9)
    cache = vision.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            contents=[types.Content(role="user", parts=[types.Part.from_bytes(data=data, mime_type="image/png")])],
            ttl="300s",
        ),
    )
    cached = vision.models.generate_content(
        model=MODEL,
        contents="Describe it.",
        config=GREEDY.model_copy(update={"cached_content": cache.name}),
    )
    direct = vision.models.generate_content(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part.from_bytes(data=data, mime_type="image/png")]),
            types.Content(role="user", parts=[types.Part(text="Describe it.")]),
        ],
        config=GREEDY,
    )
    assert cached.usage_metadata.cached_content_token_count == cache.usage_metadata.total_token_count
    assert cached.text == direct.text


def _seen(client: genai.Client, data: bytes, mime: str) -> dict[str, int]:
    response = client.models.generate_content(
        model=MODEL,
        contents=[types.Part.from_bytes(data=data, mime_type=mime)],
        config=types.GenerateContentConfig(temperature=0, max_output_tokens=1),
    )
    return _details(response.usage_metadata.prompt_tokens_details)


def test_a_video_is_seen_a_frame_a_second(vision: genai.Client) -> None:
    image = _seen(vision, picture(3), "image/png")["IMAGE"]
    three, five = _seen(vision, video(3), "video/mp4")["VIDEO"], _seen(vision, video(5), "video/mp4")["VIDEO"]
    # Two more frames: two more pictures, each after its time stamp ("00:03 ").
    assert 2 * image < five - three <= 2 * image + 16  # SmolLM2 writes each digit as a token
    first = vision.models.generate_content(
        model=MODEL, contents=[types.Part.from_bytes(data=video(3, seed=1), mime_type="video/mp4")], config=GREEDY
    )
    second = vision.models.generate_content(
        model=MODEL, contents=[types.Part.from_bytes(data=video(3, seed=2), mime_type="video/mp4")], config=GREEDY
    )
    assert _first_logprobs(first) != _first_logprobs(second)
    assert "VIDEO" in _details(first.usage_metadata.prompt_tokens_details)


def test_bad_pictures_are_a_clear_400_and_the_server_goes_on(vision: genai.Client) -> None:
    for data, mime in [(b"\x89PNG\r\n\x1a\nbroken", "image/png"), (b"not a video", "video/mp4")]:
        with pytest.raises(genai_errors.ClientError) as caught:
            vision.models.generate_content(model=MODEL, contents=[types.Part.from_bytes(data=data, mime_type=mime)])
        assert caught.value.code == 400
    assert _ask(vision, picture(1)).text is not None


def test_a_text_model_on_the_same_server_still_reads_images_by_ocr(vision_server: RunningServer) -> None:
    import base64

    reply = httpx.post(
        f"{vision_server.url}/v1beta/models/{TEXT_ONLY}:countTokens",
        headers={"x-goog-api-key": API_KEY},
        json={
            "contents": [
                {"parts": [{"inlineData": {"mimeType": "image/png", "data": base64.b64encode(picture(1)).decode()}}]}
            ]
        },
    )
    assert reply.status_code == 200, reply.text


@pytest.fixture(scope="module")
def live_vision(vision_server: RunningServer, certificate: tuple[Path, Path]) -> Iterator[genai.Client]:
    """The vision server over wss:// (the Python SDK's Live client needs TLS)."""
    server = start_server(vision_server.app, certificate=certificate, lifespan="off")
    yield genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(base_url=server.url, async_client_args={"ssl": trusting(certificate)}),
    )
    server.stop()


def _live_turn(client: genai.Client, frames: list[bytes]) -> tuple[str, int]:
    config = types.LiveConnectConfig(response_modalities=["TEXT"], temperature=0, max_output_tokens=8)

    async def converse() -> tuple[str, int]:
        text, prompt_tokens = [], 0
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            for frame in frames:
                await session.send_realtime_input(video=types.Blob(data=frame, mime_type="image/jpeg"))
            await session.send_realtime_input(text="Describe it.")
            async for message in session.receive():  # until turnComplete
                if message.text:
                    text.append(message.text)
                if message.usage_metadata is not None:
                    prompt_tokens = message.usage_metadata.prompt_token_count or 0
        return "".join(text), prompt_tokens

    return asyncio.run(converse())


def test_live_video_frames_are_seen_with_the_next_turn(live_vision: genai.Client) -> None:
    blind_text, blind_tokens = _live_turn(live_vision, [])
    first_text, first_tokens = _live_turn(live_vision, [picture(4, "image/jpeg")])
    second_text, _ = _live_turn(live_vision, [picture(5, "image/jpeg")])
    assert first_tokens >= blind_tokens + 16  # the frame's image tokens
    assert first_text not in (second_text, blind_text)  # the answer depends on what was seen
    assert _live_turn(live_vision, [picture(4, "image/jpeg")]) == (first_text, first_tokens)

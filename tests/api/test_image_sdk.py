"""Images for a text-only model, through the real google-genai SDK: the text in them is read by OCR and
given to the model marked as read (type and size said), inline, uploaded and in cached contents."""

from __future__ import annotations

import asyncio
import base64
import io
import time

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import API_KEY
from tests.images import FORMATS, text_image
from tests.server import RunningServer

MODEL = "gemini-2.5-flash"
LINES = ["Invoice number 4821", "Total due 312 euros"]


def _similar(expected: str, read: str) -> float:
    """Characters read right, spaces and case aside (OCR tends to drop the spaces between words)."""
    import difflib

    def letters(text: str) -> str:
        return "".join(c for c in text.lower() if c.isalnum())

    return difflib.SequenceMatcher(None, letters(expected), letters(read)).ratio()


def _seen(server: RunningServer, data: bytes, mime: str):
    return asyncio.run(server.app.state.reading.read(data, mime, "test"))


def _count(server: RunningServer, parts: list[dict]) -> dict:
    reply = httpx.post(
        f"{server.url}/v1beta/models/{MODEL}:countTokens",
        json={"contents": [{"parts": parts}]},
        headers={"x-goog-api-key": API_KEY},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.parametrize("mime", sorted(FORMATS))
def test_every_image_type_is_read(client: genai.Client, real_server: RunningServer, mime: str) -> None:
    data = text_image(LINES, mime)
    seen = _seen(real_server, data, mime)
    assert _similar(" ".join(LINES), seen.text) >= 0.9, seen.text
    assert (seen.width, seen.height) == (720, 240)
    prompt = seen.prompt_text()
    assert "OCR" in prompt and "720x240" in prompt and "not seen" in prompt
    image = client.models.count_tokens(model=MODEL, contents=[types.Part.from_bytes(data=data, mime_type=mime)])
    assert image.total_tokens == client.models.count_tokens(model=MODEL, contents=[prompt]).total_tokens


def test_generate_content_with_an_image(client: genai.Client, real_server: RunningServer) -> None:
    data = text_image(LINES)
    response = client.models.generate_content(
        model=MODEL,
        contents=[types.Part.from_bytes(data=data, mime_type="image/png"), "What is the invoice number?"],
        config=types.GenerateContentConfig(max_output_tokens=16, temperature=0),
    )
    details = {d.modality.value: d.token_count for d in response.usage_metadata.prompt_tokens_details}
    assert details["IMAGE"] > 10 and sum(details.values()) == response.usage_metadata.prompt_token_count
    inline = {"inlineData": {"data": base64.b64encode(data).decode(), "mimeType": "image/png"}}
    counted = _count(real_server, [inline, {"text": "What is the invoice number?"}])
    assert counted["totalTokens"] == response.usage_metadata.prompt_token_count
    assert {d["modality"]: d["tokenCount"] for d in counted["promptTokensDetails"]} == details


def test_uploaded_image_and_a_cache_holding_one(client_v1beta: genai.Client, real_server: RunningServer) -> None:
    data = text_image(LINES, "image/jpeg")
    uploaded = client_v1beta.files.upload(file=io.BytesIO(data), config=types.UploadFileConfig(mime_type="image/jpeg"))
    deadline = time.monotonic() + 60
    while (file := client_v1beta.files.get(name=uploaded.name)).state.name == "PROCESSING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert file.state.name == "ACTIVE"
    part = types.Part.from_uri(file_uri=file.uri, mime_type="image/jpeg")
    counted = _count(real_server, [{"fileData": {"fileUri": file.uri, "mimeType": "image/jpeg"}}])
    assert [d["modality"] for d in counted["promptTokensDetails"]] == ["TEXT", "IMAGE"]
    # google-genai's own cache tests put an image in a cache: that works.
    cache = client_v1beta.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            contents=[
                types.Content(role="user", parts=[part, types.Part.from_bytes(data=data, mime_type="image/jpeg")])
            ],
            ttl="300s",
        ),
    )
    try:
        response = client_v1beta.models.generate_content(
            model=MODEL,
            contents="What is the total?",
            config=types.GenerateContentConfig(cached_content=cache.name, max_output_tokens=8),
        )
        assert response.usage_metadata.cached_content_token_count == cache.usage_metadata.total_token_count
    finally:
        client_v1beta.caches.delete(name=cache.name)


@pytest.mark.parametrize(
    ("data", "mime", "words"),
    [
        (b"\x89PNG\r\n\x1a\nbroken", "image/png", "not a readable image"),
        (b"GIF89a", "image/jpeg", "not a readable image"),
        (b"II*\0", "image/tiff", "Unsupported MIME type 'image/tiff'"),
    ],
)
def test_bad_images_are_a_clear_400(client: genai.Client, data: bytes, mime: str, words: str) -> None:
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents=[types.Part.from_bytes(data=data, mime_type=mime)])
    assert caught.value.code == 400 and words in caught.value.message


def test_a_video_without_sound_is_refused_clearly(client: genai.Client) -> None:
    from tests.speech import encode

    data = encode(b"", "video/mp4", video=True)
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.count_tokens(model=MODEL, contents=[types.Part.from_bytes(data=data, mime_type="video/mp4")])
    assert caught.value.code == 400 and "no vision model" in caught.value.message

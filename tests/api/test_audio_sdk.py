"""Audio input through the real google-genai SDK: inline and uploaded audio in every container Google
lists, transcribed by the packaged Whisper (tiny.en) in place of the part, reported as AUDIO tokens."""

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
from tests.server import RunningServer
from tests.speech import FORMATS, encode, silence, spoken, word_error_rate

MODEL = "gemini-2.5-flash"
SAID = "Please book a table for four people at seven o'clock tonight."


def _heard(server: RunningServer, data: bytes, mime: str):
    hearing = server.app.state.hearing
    return asyncio.run(hearing.hear(data, mime, "test"))


def _details(usage) -> dict[str, int]:
    return {d.modality.value if hasattr(d.modality, "value") else d.modality: d.token_count for d in usage}


@pytest.mark.parametrize("mime", sorted(FORMATS))
def test_every_container_is_transcribed(client: genai.Client, real_server: RunningServer, mime: str) -> None:
    data = encode(spoken(SAID), mime)
    heard = _heard(real_server, data, mime)
    assert word_error_rate(SAID, heard.transcript) <= 0.2, heard.transcript
    # What the model reads in the part's place is exactly the marked transcript.
    audio = client.models.count_tokens(model=MODEL, contents=[types.Part.from_bytes(data=data, mime_type=mime)])
    text = client.models.count_tokens(model=MODEL, contents=[heard.prompt_text()])
    assert audio.total_tokens == text.total_tokens


def test_generate_content_with_an_audio_part(client: genai.Client) -> None:
    data = encode(spoken(SAID), "audio/mp3")
    response = client.models.generate_content(
        model=MODEL,
        contents=[
            types.Part.from_bytes(data=data, mime_type="audio/mp3"),
            "How many people?",
        ],
        config=types.GenerateContentConfig(temperature=0, max_output_tokens=24),
    )
    assert response.text
    details = _details(response.usage_metadata.prompt_tokens_details)
    assert details["AUDIO"] > 10 and details["TEXT"] > 0
    assert sum(details.values()) == response.usage_metadata.prompt_token_count
    counted = client.models.count_tokens(
        model=MODEL,
        contents=[
            types.Part.from_bytes(data=data, mime_type="audio/mp3"),
            "How many people?",
        ],
    )
    assert counted.total_tokens == response.usage_metadata.prompt_token_count
    # Streamed: the same prompt, the same answer (greedy), usage on the last chunk.
    chunks = list(
        client.models.generate_content_stream(
            model=MODEL,
            contents=[
                types.Part.from_bytes(data=data, mime_type="audio/mp3"),
                "How many people?",
            ],
            config=types.GenerateContentConfig(temperature=0, max_output_tokens=24),
        )
    )
    assert "".join(c.text or "" for c in chunks) == response.text
    assert _details(chunks[-1].usage_metadata.prompt_tokens_details) == details


def test_uploaded_audio_is_transcribed_once_while_processing(client: genai.Client, real_server: RunningServer) -> None:
    data = encode(spoken(SAID), "audio/flac")
    uploaded = client.files.upload(file=_file(data), config=types.UploadFileConfig(mime_type="audio/flac"))
    assert uploaded.state.name in ("PROCESSING", "ACTIVE")
    ready = _wait_active(client, uploaded.name)
    assert ready.state.name == "ACTIVE"
    part = types.Part.from_uri(file_uri=ready.uri, mime_type="audio/flac")
    counted = client.models.count_tokens(model=MODEL, contents=[part])
    raw = _count(
        real_server, {"contents": [{"parts": [{"fileData": {"fileUri": ready.uri, "mimeType": "audio/flac"}}]}]}
    )
    assert {d["modality"] for d in raw["promptTokensDetails"]} == {"TEXT", "AUDIO"}
    assert sum(d["tokenCount"] for d in raw["promptTokensDetails"]) == raw["totalTokens"] == counted.total_tokens
    inline = client.models.count_tokens(
        model=MODEL, contents=[types.Part.from_bytes(data=data, mime_type="audio/flac")]
    )
    assert counted.total_tokens == inline.total_tokens
    response = client.models.generate_content(
        model=MODEL, contents=[part, "Summarise."], config=types.GenerateContentConfig(max_output_tokens=8)
    )
    assert _details(response.usage_metadata.prompt_tokens_details)["AUDIO"] > 10


def test_a_video_is_heard_by_its_audio_track(client: genai.Client, real_server: RunningServer) -> None:
    data = encode(spoken(SAID), "video/mp4", video=True)
    heard = _heard(real_server, data, "video/mp4")
    assert word_error_rate(SAID, heard.transcript) <= 0.2 and "video" in heard.prompt_text()
    inline = {"inlineData": {"data": base64.b64encode(data).decode(), "mimeType": "video/mp4"}}
    counted = _count(real_server, {"contents": [{"parts": [inline]}]})
    assert [d["modality"] for d in counted["promptTokensDetails"]] == ["TEXT", "AUDIO"]


def test_cached_content_holds_audio(client_v1beta: genai.Client) -> None:
    data = encode(spoken(SAID), "audio/wav")
    cache = client_v1beta.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            contents=[types.Content(role="user", parts=[types.Part.from_bytes(data=data, mime_type="audio/wav")])],
            system_instruction="Answer about the recording.",
            ttl="300s",
        ),
    )
    try:
        response = client_v1beta.models.generate_content(
            model=MODEL,
            contents="At what time?",
            config=types.GenerateContentConfig(cached_content=cache.name, max_output_tokens=8),
        )
        assert response.usage_metadata.cached_content_token_count == cache.usage_metadata.total_token_count
        assert _details(response.usage_metadata.prompt_tokens_details)["AUDIO"] > 10
    finally:
        client_v1beta.caches.delete(name=cache.name)


def test_batches_take_audio(client: genai.Client) -> None:
    data = encode(spoken(SAID), "audio/ogg")
    job = client.batches.create(
        model=MODEL,
        src=[
            types.InlinedRequest(
                contents=[
                    types.Content(
                        role="user",
                        parts=[
                            types.Part.from_bytes(data=data, mime_type="audio/ogg"),
                            types.Part(text="When?"),
                        ],
                    )
                ],
                config=types.GenerateContentConfig(max_output_tokens=8),
            )
        ],
    )
    deadline = time.monotonic() + 120
    while (job := client.batches.get(name=job.name)).state.name not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    (result,) = job.dest.inlined_responses
    assert result.error is None, result.error
    assert _details(result.response.usage_metadata.prompt_tokens_details)["AUDIO"] > 10


def test_silence_is_an_empty_transcript(client: genai.Client, real_server: RunningServer) -> None:
    data = encode(silence(3.0), "audio/wav")
    heard = _heard(real_server, data, "audio/wav")
    assert heard.transcript == "" and "(no speech)" in heard.prompt_text()
    # Raw PCM at its declared rate, as the Live API sends it.
    raw = _heard(real_server, spoken(SAID, 24000), "audio/pcm;rate=24000")
    assert word_error_rate(SAID, raw.transcript) <= 0.2


@pytest.mark.parametrize(
    ("data", "mime", "words"),
    [
        (b"RIFF\0\0\0\0WAVEfmt garbage" * 40, "audio/wav", "not decodable audio"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "audio/mp3", "not decodable audio"),
        (b"", "audio/ogg", "not decodable audio"),
        (bytes(64), "audio/pcm;rate=1", "sample rate"),
    ],
)
def test_bad_audio_is_a_clear_400(client: genai.Client, data: bytes, mime: str, words: str) -> None:
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.count_tokens(model=MODEL, contents=[types.Part.from_bytes(data=data, mime_type=mime)])
    assert caught.value.code == 400 and words in caught.value.message
    assert "contents[0].parts[0].inline_data" in caught.value.message
    # The server is fine after it.
    assert client.models.count_tokens(model=MODEL, contents="still here").total_tokens > 0


def test_audio_longer_than_the_inline_limit_is_refused(client: genai.Client) -> None:
    data = _long_flac(silence(1, 8000), hours=31 / 60)  # FLAC encodes half an hour of silence in a blink
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.count_tokens(model=MODEL, contents=[types.Part.from_bytes(data=data, mime_type="audio/flac")])
    assert caught.value.code == 400 and "Files API" in caught.value.message


def _count(server: RunningServer, body: dict) -> dict:
    reply = httpx.post(
        f"{server.url}/v1beta/models/{MODEL}:countTokens", json=body, headers={"x-goog-api-key": API_KEY}
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def _file(data: bytes):
    return io.BytesIO(data)


def _wait_active(client: genai.Client, name: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while (file := client.files.get(name=name)).state.name == "PROCESSING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return file


def test_a_two_hour_recording_is_refused_inline_and_taken_as_a_file(client: genai.Client) -> None:
    """Two hours (FLAC, 8 kHz): too long inline, a 400 pointing at the Files API at once; uploaded, it is
    decoded and transcribed in the background while the server keeps answering."""
    data = _long_flac(spoken(SAID, 8000), hours=2)
    started = time.monotonic()
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.count_tokens(model=MODEL, contents=[types.Part.from_bytes(data=data, mime_type="audio/flac")])
    assert caught.value.code == 400 and "720" in caught.value.message and "Files API" in caught.value.message
    assert time.monotonic() - started < 5
    uploaded = client.files.upload(file=_file(data), config=types.UploadFileConfig(mime_type="audio/flac"))
    assert uploaded.state.name == "PROCESSING"
    started = time.monotonic()
    assert client.models.count_tokens(model=MODEL, contents="meanwhile").total_tokens > 0
    assert time.monotonic() - started < 5  # transcription runs off the event loop
    ready = _wait_active(client, uploaded.name, timeout=300)
    assert ready.state.name == "ACTIVE"
    response = client.models.generate_content(
        model=MODEL,
        contents=[types.Part.from_uri(file_uri=ready.uri, mime_type="audio/flac"), "Summarise."],
        config=types.GenerateContentConfig(max_output_tokens=4),
    )
    assert _details(response.usage_metadata.prompt_tokens_details)["AUDIO"] > 10


def _long_flac(speech: bytes, hours: float) -> bytes:
    """``speech`` (PCM at 8 kHz), then silence to ``hours``, as FLAC (which encodes silence fast and small)."""
    import av
    import numpy as np

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=8000)
        stream.layout = "mono"
        minute = np.zeros((1, 8000 * 60), np.int16)
        first = np.frombuffer(speech, "<i2").reshape(1, -1)
        for samples in [first] + [minute] * int(hours * 60):
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate = 8000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()

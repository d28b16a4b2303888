"""llama.cpp and PyTorch share the process's OpenMP runtime, libgomp, which keeps a pool of worker threads for every
thread that ever ran a parallel region. Once those pools hold more threads than the machine has cores, libgomp's
waiting threads barely spin before they sleep, and llama.cpp waits at a barrier after each op of a decode step:
one embedding call, one picture or one answer from a second model made SmolLM2 generate ~2.8x slower for the rest
of the server's life. PyTorch's and libmtmd's work now runs on threads that end with it
(``localgem.one_thread.in_a_thread_of_its_own``), and localgem sets libgomp's wait policy to active (a thousand
spins where pools outnumber cores; ``localgem/__init__.py``), which covers two models computing on their threads.

Measured without timing: the threads' voluntary context switches while the model writes a fixed answer (a few per
token where llama.cpp's threads spin at barriers; 660 per token before these changes).
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

import pytest
from google import genai
from google.genai import types

from tests.conftest import API_KEY, start_real_server
from tests.server import RunningServer

TOKENS = 64
#: Voluntary context switches per generated token above which llama.cpp's threads are sleeping at barriers: ~660
#: where they sleep; a few alone, and up to 64 seen in a full CI run right after a drawing (its thread ending).
SLEEPING = 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_pipelines: list[dict]) -> Iterator[RunningServer]:
    """A server of its own (no earlier test has run PyTorch in it), with a tiny random-weight image model."""
    running = start_real_server(
        tmp_path_factory.mktemp("openmp"), models=tiny_pipelines, default_image_model="tiny-image"
    )
    yield running
    running.stop()


def switches() -> int:
    total = 0
    for status in glob.glob("/proc/self/task/*/status"):
        try:
            text = Path(status).read_text()
        except OSError:  # the thread ended meanwhile
            continue
        total += sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("voluntary_ctxt_switches"))
    return total


def switches_per_token(client: genai.Client, model: str = "gemini-2.5-flash") -> float:
    config = types.GenerateContentConfig(temperature=0, max_output_tokens=TOKENS)
    before = switches()
    response = client.models.generate_content(
        model=model, contents="Write a long story about a fox who finds a lantern.", config=config
    )
    return (switches() - before) / response.usage_metadata.candidates_token_count


@pytest.fixture(scope="module")
def client(server: RunningServer) -> genai.Client:
    made = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
    switches_per_token(made)  # the model's first load and answer
    assert switches_per_token(made) < SLEEPING
    return made


def test_generation_keeps_its_pace_after_embeddings(client: genai.Client) -> None:
    for _ in range(2):  # the embedding model's load, then a call on a loaded model
        client.models.embed_content(model="gemini-embedding-001", contents=["a fox", "a lantern in the woods"])
    after = [switches_per_token(client) for _ in range(2)]
    assert max(after) < SLEEPING, after


def test_generation_keeps_its_pace_after_drawing(server: RunningServer, client: genai.Client) -> None:
    vertex = genai.Client(vertexai=True, api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
    for _ in range(2):  # the image model's load and a drawing, then a drawing on a loaded model
        vertex.models.generate_images(
            model="imagen-4.0-generate-001", prompt="A fox", config=types.GenerateImagesConfig(number_of_images=1)
        )
    after = [switches_per_token(client) for _ in range(2)]
    assert max(after) < SLEEPING, after


def test_generation_keeps_its_pace_beside_a_second_model(client: genai.Client) -> None:
    """Gemma 3 computes on a scheduler thread of its own, with its own OpenMP pool."""
    assert min(switches_per_token(client, "gemma-3-270m") for _ in range(2)) < SLEEPING  # the first loads it
    after = [switches_per_token(client) for _ in range(2)]
    assert max(after) < SLEEPING, after


def test_generation_keeps_its_pace_after_a_picture_is_seen(tmp_path_factory: pytest.TempPathFactory) -> None:
    """libmtmd encodes a picture with llama.cpp's OpenMP threads, on the thread that asks, and the vision model
    decodes on a scheduler thread of its own."""
    pytest.importorskip("gguf")
    from tests.tiny_vlm import make_tiny_vlm, picture

    weights, projector = make_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))
    vision = {"id": "tiny-vision", "path": str(weights), "mmproj": str(projector), "context_length": 2048}
    running = start_real_server(tmp_path_factory.mktemp("openmp-vision"), models=[vision])
    try:
        client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=running.url))
        switches_per_token(client)
        assert switches_per_token(client) < SLEEPING
        seen = types.Part.from_bytes(data=picture(3), mime_type="image/png")
        config = types.GenerateContentConfig(temperature=0, max_output_tokens=4)
        client.models.generate_content(model="tiny-vision", contents=[seen, "What is this?"], config=config)
        after = [switches_per_token(client) for _ in range(2)]
        assert max(after) < SLEEPING, after
    finally:
        running.stop()

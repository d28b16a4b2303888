"""PyTorch and llama.cpp share the process's OpenMP runtime (libgomp): once PyTorch has run on a thread that stays
alive, libgomp holds more threads than the machine has cores and makes every waiting thread sleep at each barrier,
and llama.cpp waits at a barrier after each op of a decode step. One embedding call made SmolLM2 generate ~2.8x
slower for the rest of the server's life. PyTorch's work now runs on threads that end with it
(``localgem.one_thread.in_a_thread_of_its_own``).

Measured without timing: the threads' voluntary context switches while the model writes a fixed answer (tens per
token where llama.cpp's threads spin at barriers; hundreds per token where they sleep: 650 before the fix).
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
#: Voluntary context switches per generated token above which llama.cpp's threads are sleeping at barriers.
SLEEPING = 50


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


def switches_per_token(client: genai.Client) -> float:
    config = types.GenerateContentConfig(temperature=0, max_output_tokens=TOKENS)
    before = switches()
    response = client.models.generate_content(
        model="gemini-2.5-flash", contents="Write a long story about a fox who finds a lantern.", config=config
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

"""Embedding models added by path (a sentence-transformers folder with task prompts, an embedding
GGUF), and embedding batches that outlive the server that took them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np

from localgem.app import create_app
from localgem.models.packaged import all_minilm_l6_v2, smollm2_135m_instruct
from localgem.settings import load_settings
from tests.conftest import API_KEY
from tests.server import start_server

HEADERS = {"x-goog-api-key": API_KEY}


def embed(url: str, model: str, text: str, **options) -> list[float]:
    body = {"content": {"parts": [{"text": text}]}, **options}
    answer = httpx.post(f"{url}/v1beta/models/{model}:embedContent", json=body, headers=HEADERS, timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.json()["embedding"]["values"]


def test_models_added_by_path_with_their_task_prompts(tmp_path: Path) -> None:
    settings = load_settings(
        environ={},
        data_dir=tmp_path,
        api_keys=[API_KEY],
        default_embedding_model="prompted",
        models=[
            {
                "id": "prompted",
                "task": "embed",
                "path": str(all_minilm_l6_v2(tmp_path)),
                "prompts": {"query": "query: ", "document": "passage: ", "Clustering": "cluster: "},
            },
            {"id": "smol-embed", "task": "embed", "path": str(smollm2_135m_instruct(tmp_path)), "context_length": 512},
        ],
    )
    server = start_server(create_app(settings))
    try:
        url = server.url
        text = "How long do I bake bread?"
        for task, prefix in [
            ("RETRIEVAL_QUERY", "query: "),
            ("QUESTION_ANSWERING", "query: "),
            ("RETRIEVAL_DOCUMENT", "passage: "),
            ("CLUSTERING", "cluster: "),
            ("CLASSIFICATION", ""),  # the model defines no prompt for it
        ]:
            prompted = embed(url, "gemini-embedding-001", text, taskType=task)
            assert np.allclose(prompted, embed(url, "prompted", prefix + text), atol=1e-6), task
        assert not np.allclose(embed(url, "prompted", text, taskType="RETRIEVAL_QUERY"), embed(url, "prompted", text))

        # A GGUF through llama.cpp's embedding mode (a chat model's hidden states, mean-pooled).
        first = embed(url, "smol-embed", text)
        assert len(first) == 576 and abs(np.linalg.norm(first) - 1) < 1e-5
        assert np.allclose(first, embed(url, "smol-embed", text), atol=1e-6)
        other = embed(url, "smol-embed", "The stock market fell sharply today.")
        assert not np.allclose(first, other, atol=1e-3)
        answer = httpx.post(
            f"{url}/v1beta/models/smol-embed:batchEmbedContents",
            json={"requests": [{"content": {"parts": [{"text": t}]}} for t in (text, "another one", "and a third")]},
            headers=HEADERS,
            timeout=120,
        ).json()
        assert np.allclose(answer["embeddings"][0]["values"], first, atol=1e-4)
        too_long = httpx.post(
            f"{url}/v1beta/models/smol-embed:embedContent",
            json={"content": {"parts": [{"text": "word " * 600}]}},
            headers=HEADERS,
        )
        assert too_long.status_code == 400 and "(512)" in too_long.json()["error"]["message"]
        cut = {"embedContentConfig": {"autoTruncate": True}}  # its first 512 tokens, whatever follows them
        long = " ".join(f"w{i}" for i in range(400))
        longer = long + " and more" * 90
        assert np.allclose(embed(url, "smol-embed", long, **cut), embed(url, "smol-embed", longer, **cut))
    finally:
        server.stop()


def test_an_embedding_batch_survives_the_server_that_accepted_it(tmp_path: Path) -> None:
    """Accepted by an API-only server, which then stops; the next server runs it from the database."""
    common = {"environ": {}, "data_dir": tmp_path, "api_keys": [API_KEY], "batch_poll_seconds": 0.2}
    texts = [f"Sentence number {i} about a different topic." for i in range(150)]
    requests = [
        {"request": {"content": {"parts": [{"text": t}]}}, "metadata": {"key": f"k{i}"}} for i, t in enumerate(texts)
    ]
    accepting = start_server(create_app(load_settings(run_batches=False, **common)))
    try:
        created = httpx.post(
            f"{accepting.url}/v1beta/models/text-embedding-004:asyncBatchEmbedContent",
            json={"batch": {"displayName": "durable", "inputConfig": {"requests": {"requests": requests}}}},
            headers=HEADERS,
        ).json()
        time.sleep(1)
        pending = httpx.get(f"{accepting.url}/v1beta/{created['name']}", headers=HEADERS).json()
        assert pending["metadata"]["state"] == "BATCH_STATE_PENDING" and not pending["done"]
    finally:
        accepting.stop()

    running = start_server(create_app(load_settings(**common)))
    try:
        deadline = time.monotonic() + 120
        while not (operation := httpx.get(f"{running.url}/v1beta/{created['name']}", headers=HEADERS).json())["done"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        results = operation["response"]["inlinedResponses"]["inlinedResponses"]
        assert [r["metadata"]["key"] for r in results] == [f"k{i}" for i in range(150)]
        batch = httpx.post(
            f"{running.url}/v1beta/models/text-embedding-004:batchEmbedContents",
            json={"requests": [{"content": {"parts": [{"text": t}]}} for t in texts[:100]]},
            headers=HEADERS,
        ).json()
        found = [r["response"]["embedding"]["values"] for r in results[:100]]
        assert np.allclose(found, [e["values"] for e in batch["embeddings"]], atol=1e-5)
        assert operation["metadata"]["batchStats"]["successfulRequestCount"] == "150"
    finally:
        running.stop()

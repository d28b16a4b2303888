"""Embeddings through google-genai and plain REST on the real all-MiniLM-L6-v2."""

from __future__ import annotations

import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from localgem.models.packaged import all_minilm_l6_v2
from tests.api.test_batches_sdk import wait_done
from tests.conftest import API_KEY, OTHER_KEY

MODEL = "gemini-embedding-001"
HEADERS = {"x-goog-api-key": API_KEY}

#: Paraphrases (same meaning, different words) — each pair must be closer than any two unrelated sentences.
PARAPHRASES = [
    ("The cat is sleeping on the sofa.", "A kitten naps on the couch."),
    ("How do I reset my password?", "What are the steps to change a forgotten password?"),
    ("The stock market fell sharply today.", "Share prices dropped steeply this afternoon."),
    ("She plays the violin beautifully.", "Her violin playing is lovely."),
    ("Heavy rain is expected tomorrow.", "Forecasters predict a downpour for the next day."),
    ("The restaurant serves excellent pasta.", "That eatery makes wonderful spaghetti."),
    ("He repaired the broken bicycle.", "He fixed the damaged bike."),
    ("The train to Paris was delayed.", "The Paris-bound train ran late."),
]


def vectors(response: types.EmbedContentResponse) -> np.ndarray:
    return np.array([e.values for e in response.embeddings], dtype=np.float64)


def embed(client: genai.Client, texts: list[str], **config) -> np.ndarray:
    response = client.models.embed_content(
        model=MODEL, contents=texts, config=types.EmbedContentConfig(**config) if config else None
    )
    return vectors(response)


def rest(server_url: str, method: str, body: dict, model: str = MODEL, key: str = API_KEY) -> httpx.Response:
    return httpx.post(
        f"{server_url}/v1beta/models/{model}:{method}", json=body, headers={"x-goog-api-key": key}, timeout=120
    )


def test_sdk_embed_content_with_task_type_and_output_dimensionality(client: genai.Client) -> None:
    texts = ["The quick brown fox.", "A slow green turtle.", "Embeddings map text to vectors."]
    small = embed(client, texts, task_type="RETRIEVAL_DOCUMENT", output_dimensionality=128)
    full = embed(client, texts, task_type="RETRIEVAL_DOCUMENT")
    assert small.shape == (3, 128) and full.shape == (3, 384)
    assert np.allclose(np.linalg.norm(small, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(full, axis=1), 1, atol=1e-5)
    # Truncated from the end, then re-normalised.
    cut = full[:, :128] / np.linalg.norm(full[:, :128], axis=1, keepdims=True)
    assert np.allclose(small, cut, atol=1e-6)


def test_vectors_are_the_models_own(client: genai.Client) -> None:
    """Exactly what sentence-transformers computes with the packaged model (normalised)."""
    from sentence_transformers import SentenceTransformer

    texts = [pair[0] for pair in PARAPHRASES]
    reference = SentenceTransformer(str(all_minilm_l6_v2(None)), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.abs(embed(client, texts) - reference).max() < 1e-5


def test_paraphrases_are_closer_than_unrelated_sentences(client: genai.Client) -> None:
    flat = [text for pair in PARAPHRASES for text in pair]
    found = embed(client, flat, task_type="SEMANTIC_SIMILARITY")
    similar = [float(found[2 * i] @ found[2 * i + 1]) for i in range(len(PARAPHRASES))]
    unrelated = [float(found[2 * i] @ found[2 * j + 1]) for i, j in itertools.permutations(range(len(PARAPHRASES)), 2)]
    assert min(similar) > max(unrelated), (similar, unrelated)
    assert np.mean(similar) > np.mean(unrelated) + 0.4


def test_identical_text_identical_vector_and_aliases(client: genai.Client) -> None:
    text = "The same words, twice."
    first = embed(client, [text])
    assert np.array_equal(first, embed(client, [text]))
    for name in ("text-embedding-004", "embedding-001", "models/all-minilm-l6-v2"):
        other = vectors(client.models.embed_content(model=name, contents=text))
        assert np.allclose(first, other, atol=1e-6), name
    # In a batch with longer neighbours (padding), the vector is the same.
    mixed = embed(client, ["A much longer neighbour sentence, with many more words in it than the other.", text])
    assert np.allclose(mixed[1], first[0], atol=1e-6)


def test_the_model_lists_its_methods(client: genai.Client) -> None:
    model = client.models.get(model=MODEL)
    assert model.name == "models/all-minilm-l6-v2"
    assert model.supported_actions[:4] == [
        "embedContent",
        "batchEmbedContents",
        "asyncBatchEmbedContent",
        "countTokens",
    ]
    assert model.input_token_limit == 256


def test_wrong_methods_are_400_naming_what_the_model_supports(client: genai.Client, real_server) -> None:
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="Hi")
    assert caught.value.code == 400 and "supports: embedContent, batchEmbedContents" in caught.value.message
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.embed_content(model="gemini-2.5-flash", contents="Hi")
    assert caught.value.code == 400 and "supports: generateContent, countTokens" in caught.value.message
    answer = rest(real_server.url, "embedContent", {"content": {"parts": [{"text": "x"}]}}, model="gemini-2.5-flash")
    assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_limits_are_400s(client: genai.Client, real_server) -> None:
    url = real_server.url
    with pytest.raises(genai_errors.ClientError, match="between 1 and 384"):
        embed(client, ["x"], output_dimensionality=385)
    long_text = " ".join(["word"] * 300)
    with pytest.raises(genai_errors.ClientError) as caught:
        embed(client, [long_text])
    assert caught.value.code == 400 and "(302)" in caught.value.message and "(256)" in caught.value.message
    # autoTruncate (REST; google-genai only sends it to Vertex) cuts instead, and says how much was used.
    cut = rest(
        url, "embedContent", {"content": {"parts": [{"text": long_text}]}, "embedContentConfig": {"autoTruncate": True}}
    )
    assert cut.status_code == 200 and cut.json()["usageMetadata"]["promptTokenCount"] == 256
    too_many = {"requests": [{"model": f"models/{MODEL}", "content": {"parts": [{"text": "x"}]}}] * 101}
    answer = rest(url, "batchEmbedContents", too_many)
    assert answer.status_code == 400 and "At most 100" in answer.json()["error"]["message"]
    wrong_model = {"requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "x"}]}}]}
    assert rest(url, "batchEmbedContents", wrong_model).status_code == 400
    title_on_query = {"content": {"parts": [{"text": "x"}]}, "taskType": "RETRIEVAL_QUERY", "title": "T"}
    assert rest(url, "embedContent", title_on_query).status_code == 400
    for bad in ({}, {"content": {"parts": [{"text": "  "}]}}, {"content": {"parts": []}}, {"taskType": "NOPE"}):
        answer = rest(url, "embedContent", bad)
        assert answer.status_code == 400, (bad, answer.text)


def test_rest_embed_content_title_usage_and_count_tokens(real_server) -> None:
    url = real_server.url
    titled = rest(
        url,
        "embedContent",
        {"content": {"parts": [{"text": "Bake for 20 minutes."}]}, "taskType": "RETRIEVAL_DOCUMENT", "title": "Bread"},
    ).json()
    plain = rest(url, "embedContent", {"content": {"parts": [{"text": "Bread\nBake for 20 minutes."}]}}).json()
    assert np.allclose(titled["embedding"]["values"], plain["embedding"]["values"], atol=1e-6)
    counted = rest(url, "countTokens", {"contents": [{"parts": [{"text": "Bread\nBake for 20 minutes."}]}]}).json()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(all_minilm_l6_v2(None)))
    expected = len(tokenizer("Bread\nBake for 20 minutes.")["input_ids"])  # [CLS] and [SEP] included
    assert counted["totalTokens"] == titled["usageMetadata"]["promptTokenCount"] == expected


def test_legacy_embed_text_methods(real_server, client: genai.Client) -> None:
    texts = ["first text", "second text"]
    expected = embed(client, texts)
    one = rest(real_server.url, "embedText", {"text": texts[0]}, model="embedding-gecko-001").json()
    assert np.allclose(one["embedding"]["value"], expected[0], atol=1e-6)
    both = rest(real_server.url, "batchEmbedText", {"texts": texts}, model="embedding-gecko-001").json()
    assert np.allclose([e["value"] for e in both["embeddings"]], expected, atol=1e-6)
    as_requests = rest(real_server.url, "batchEmbedText", {"requests": [{"text": t} for t in texts]}).json()
    assert np.allclose([e["value"] for e in as_requests["embeddings"]], expected, atol=1e-6)


def test_concurrent_callers_share_batches(real_server) -> None:
    body = {"content": {"parts": [{"text": "Concurrent callers, one batch. " * 6}]}}
    assert rest(real_server.url, "embedContent", body).status_code == 200  # the model is loaded
    batcher = real_server.app.state.embedders.loaded()["all-minilm-l6-v2"]
    before = (batcher.embedder.stats.calls, batcher.embedder.stats.texts)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: rest(real_server.url, "embedContent", body), range(32)))
    assert all(a.status_code == 200 for a in answers)
    calls = batcher.embedder.stats.calls - before[0]
    assert batcher.embedder.stats.texts - before[1] == 32
    assert calls < 32, calls


def test_async_batch_embed_content_through_the_sdk(client: genai.Client, real_server) -> None:
    texts = ["alpha beta", "gamma delta", "epsilon zeta"]
    job = client.batches.create_embeddings(
        model=MODEL,
        src=types.EmbeddingsBatchJobSource(
            inlined_requests=types.EmbedContentBatch(
                contents=texts, config=types.EmbedContentConfig(output_dimensionality=64)
            )
        ),
    )
    assert job.name.startswith("batches/")
    job = wait_done(client, job.name, timeout=60)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    found = np.array([r.response.embedding.values for r in job.dest.inlined_embed_content_responses])
    assert np.allclose(found, embed(client, texts, output_dimensionality=64), atol=1e-6)
    # Another project cannot see it.
    other = genai.Client(api_key=OTHER_KEY, http_options=types.HttpOptions(base_url=real_server.url))
    with pytest.raises(genai_errors.ClientError) as caught:
        other.batches.get(name=job.name)
    assert caught.value.code == 404


def test_async_batch_requests_fail_alone(real_server) -> None:
    url = real_server.url
    requests = [
        {"request": {"content": {"parts": [{"text": "fine"}]}}, "metadata": {"key": "a"}},
        {"request": {"content": {"parts": [{"text": "word " * 300}]}}, "metadata": {"key": "too-long"}},
        {
            "request": {"content": {"parts": [{"text": "also fine"}]}, "outputDimensionality": 999},
            "metadata": {"key": "c"},
        },
    ]
    created = rest(
        url,
        "asyncBatchEmbedContent",
        {"batch": {"displayName": "mixed", "inputConfig": {"requests": {"requests": requests}}}},
    )
    assert created.status_code == 200, created.text
    operation = created.json()
    assert operation["metadata"]["batchStats"]["requestCount"] == "3"
    deadline = time.monotonic() + 60
    while not operation.get("done"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
        operation = httpx.get(f"{url}/v1beta/{operation['name']}", headers=HEADERS).json()
    metadata = operation["metadata"]
    assert metadata["state"] == "BATCH_STATE_SUCCEEDED" and metadata["displayName"] == "mixed"
    assert metadata["batchStats"] == {
        "requestCount": "3",
        "successfulRequestCount": "1",
        "failedRequestCount": "2",
        "pendingRequestCount": "0",
    }
    results = operation["response"]["inlinedResponses"]["inlinedResponses"]
    assert [r["metadata"]["key"] for r in results] == ["a", "too-long", "c"]
    assert len(results[0]["response"]["embedding"]["values"]) == 384
    assert results[1]["error"]["code"] == 3 and "256" in results[1]["error"]["message"]
    assert results[2]["error"]["code"] == 3
    assert rest(url, "asyncBatchEmbedContent", {"batch": {"inputConfig": {}}}).status_code == 400
    assert (
        rest(
            url,
            "asyncBatchEmbedContent",
            {"batch": {"inputConfig": {"requests": {"requests": requests}}}},
            model="gemini-2.5-flash",
        ).status_code
        == 400
    )


def test_async_batch_embed_content_from_a_jsonl_file(client: genai.Client, tmp_path) -> None:
    texts = ["alpha beta", "gamma delta"]
    path = tmp_path / "embed.jsonl"
    lines = [{"key": f"t{i}", "request": {"content": {"parts": [{"text": t}]}}} for i, t in enumerate(texts)]
    lines.append({"key": "bad", "request": {"content": {"parts": [{"text": "x"}]}, "outputDimensionality": 999}})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    uploaded = client.files.upload(file=path, config=types.UploadFileConfig(mime_type="application/jsonl"))
    job = client.batches.create_embeddings(model=MODEL, src=types.EmbeddingsBatchJobSource(file_name=uploaded.name))
    job = wait_done(client, job.name, timeout=60)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    results = [json.loads(line) for line in client.files.download(file=job.dest.file_name).decode().splitlines()]
    assert [r["key"] for r in results] == ["t0", "t1", "bad"]
    found = np.array([r["response"]["embedding"]["values"] for r in results[:2]])
    assert np.allclose(found, embed(client, texts), atol=1e-6)
    assert results[2]["error"]["code"] == 3 and "999" in results[2]["error"]["message"]

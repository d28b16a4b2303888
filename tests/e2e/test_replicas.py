"""Stateless replicas: two localgem processes sharing one PostgreSQL database and one S3 bucket (SeaweedFS), behind
HAProxy balancing every request round robin. The SDKs talk to the proxy and cannot tell: an upload's chunks
land on both replicas, a cache made on one serves requests on both, a batch runs each request once, a File
Search document is ingested once and grounds answers on both, a Live session resumes on the other replica, and a
quota is counted once."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google import genai
from google.genai import types

from tests.conftest import API_KEY
from tests.e2e.test_files_durability import ServerProcess
from tests.haproxy import REPLICA_HEADER, requires_haproxy, round_robin
from tests.live import open_session, read_turn, receive, send, user_turn
from tests.pgvector_server import new_database
from tests.s3_server import S3Server
from tests.uploads import send_chunk, start_upload

HEADERS = {"x-goog-api-key": API_KEY}
GREEDY = types.GenerateContentConfig(temperature=0, max_output_tokens=12)
QUOTA_MODEL = "gemini-quota-test"  # resolves to the default model; only it has a quota
QUOTA = 3


class Fleet:
    def __init__(self, replicas: list[ServerProcess], url: str, s3: S3Server, bucket: str) -> None:
        self.replicas = replicas
        self.url = url
        self.s3 = s3
        self.bucket = bucket

    def stored(self) -> list[str]:
        """The keys in the shared bucket."""
        listed = self.s3.client().list_objects_v2(Bucket=self.bucket)
        return [item["Key"] for item in listed.get("Contents", [])]

    def client(self, **options) -> genai.Client:
        return genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=self.url, **options))

    def started(self) -> list[int]:
        """Engine requests each replica has started (its /readyz counters)."""
        found = []
        for replica in self.replicas:
            models = httpx.get(f"{replica.url}/readyz", timeout=30).json()["models"]
            found.append(models.get("smollm2-135m-instruct", {}).get("requests_started", 0))
        return found


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    requires_haproxy()
    root = tmp_path_factory.mktemp("fleet")
    # PostgreSQL with pgvector: File Search's chunk index is in the shared database too.
    database = new_database(request.getfixturevalue("pgvector_url"))
    s3: S3Server = request.getfixturevalue("s3")
    bucket = s3.new_bucket()
    replicas = [ServerProcess(root / f"replica{i}", database) for i in range(2)]
    for replica in replicas:
        replica.env.update(
            {
                # The one bucket every replica shares (and no blob store of its own).
                "LOCALGEM_BLOB_URL": f"s3://{bucket}/fleet",
                "LOCALGEM_S3_ENDPOINT_URL": s3.endpoint_url,
                "LOCALGEM_S3_REGION": s3.region,
                "LOCALGEM_S3_ACCESS_KEY_ID": s3.access_key_id,
                "LOCALGEM_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
                "LOCALGEM_QUOTAS": json.dumps([{"model": QUOTA_MODEL, "requests_per_day": QUOTA}]),
                "LOCALGEM_BATCH_POLL_SECONDS": "0.2",
            }
        )
        replica.start()
    try:
        with round_robin([r.url for r in replicas], root) as url:
            yield Fleet(replicas, url, s3, bucket)
    finally:
        for replica in replicas:
            replica.kill()


def test_requests_are_spread_and_answer_alike(fleet: Fleet) -> None:
    body = {"contents": [{"parts": [{"text": "Name a colour."}]}], "generationConfig": {"temperature": 0}}
    served, texts = set(), set()
    for _ in range(4):
        response = httpx.post(
            f"{fleet.url}/v1beta/models/gemini-2.5-flash:generateContent", json=body, headers=HEADERS, timeout=120
        )
        assert response.status_code == 200, response.text
        served.add(response.headers[REPLICA_HEADER])
        texts.add(response.json()["candidates"][0]["content"]["parts"][0]["text"])
    assert served == {"r0", "r1"} and len(texts) == 1  # greedy: the same answer from either replica
    client = fleet.client()
    streamed = "".join(
        c.text or ""
        for c in client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi.", config=GREEDY)
    )
    assert streamed
    assert client.models.count_tokens(model="gemini-2.5-flash", contents="Hello there").total_tokens > 0


def test_an_uploads_chunks_land_on_both_replicas(fleet: Fleet, tmp_path: Path) -> None:
    data = random.Random(3).randbytes(3 * 1024 * 1024 + 11)
    started = start_upload(fleet.url, API_KEY, len(data), "application/octet-stream")
    assert started.status_code == 200, started.text
    url = started.headers["x-goog-upload-url"]
    assert url.startswith(fleet.url)  # the session URL points at the proxy, not at a replica
    served, offset, step = [], 0, 1024 * 1024
    while offset < len(data):
        last = offset + step >= len(data)
        response = send_chunk(url, data[offset : offset + step], offset, finalize=last)
        assert response.status_code == 200, response.text
        served.append(response.headers[REPLICA_HEADER])
        offset = min(offset + step, len(data))
    assert set(served) == {"r0", "r1"}, served
    file = response.json()["file"]
    client = fleet.client()
    assert client.files.get(name=file["name"]).size_bytes == len(data)
    for _ in range(2):  # downloaded through either replica
        assert client.files.download(file=file["name"]) == data
    digest = hashlib.sha256(data).hexdigest()
    assert [key for key in fleet.stored() if key.endswith(digest)]  # its bytes are in the shared bucket
    assert not [key for key in fleet.stored() if "/partials/" in key]  # and no piece of the upload is left


def test_a_cache_made_on_one_replica_serves_both(fleet: Fleet) -> None:
    client = fleet.client()
    manual = "\n".join(f"Step {i}: turn dial {i % 7} to position {i * 3 % 11}." for i in range(1, 40))
    cache = client.caches.create(
        model="gemini-2.5-flash",
        config=types.CreateCachedContentConfig(contents=[manual], system_instruction="Answer briefly.", ttl="300s"),
    )
    answers, served = set(), set()
    for _ in range(4):
        response = httpx.post(
            f"{fleet.url}/v1beta/models/gemini-2.5-flash:generateContent",
            json={
                "contents": [{"role": "user", "parts": [{"text": "Which dial in step 3?"}]}],
                "cachedContent": cache.name,
                "generationConfig": {"temperature": 0, "maxOutputTokens": 12},
            },
            headers=HEADERS,
            timeout=120,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["usageMetadata"]["cachedContentTokenCount"] > 100
        answers.add(body["candidates"][0]["content"]["parts"][0]["text"])
        served.add(response.headers[REPLICA_HEADER])
    assert served == {"r0", "r1"} and len(answers) == 1
    client.caches.delete(name=cache.name)


def test_a_batch_runs_each_request_once(fleet: Fleet) -> None:
    client = fleet.client()
    before = fleet.started()
    requests = [
        {"contents": [{"parts": [{"text": f"Count to {i}."}]}], "config": {"max_output_tokens": 3}} for i in range(6)
    ]
    job = client.batches.create(model="gemini-2.5-flash", src=requests)
    deadline = time.monotonic() + 300
    while (job := client.batches.get(name=job.name)).state.name not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    assert len(job.dest.inlined_responses) == 6
    assert sum(fleet.started()) - sum(before) == 6  # claimed once: no request ran on both replicas


def test_a_file_search_document_is_ingested_once_and_grounds_answers_on_both(fleet: Fleet, tmp_path: Path) -> None:
    client = fleet.client()
    store = client.file_search_stores.create(config={"display_name": "fleet"}).name
    notes = tmp_path / "kettle.md"
    facts = [f"Fact {i}: the Zorblax {i} kettle boils water in exactly {40 + i} seconds." for i in range(12)]
    notes.write_text("# Kettles\n\n" + "\n\n".join(facts) + "\n")
    operation = client.file_search_stores.upload_to_file_search_store(file_search_store_name=store, file=str(notes))
    deadline = time.monotonic() + 120
    while not operation.done:  # polled through the proxy: each poll may reach either replica
        assert time.monotonic() < deadline
        time.sleep(0.2)
        operation = client.operations.get(operation)
    assert operation.error is None
    (document,) = client.file_search_stores.documents.list(parent=store)
    assert document.state.name == "STATE_ACTIVE"
    tool = types.Tool(file_search=types.FileSearch(file_search_store_names=[store], top_k=20))
    config = types.GenerateContentConfig(tools=[tool], temperature=0, max_output_tokens=20)
    answered_by, contexts = set(), []
    for _ in range(4):
        http = httpx.post(
            f"{fleet.url}/v1beta/models/gemini-2.5-flash:generateContent",
            json={
                "contents": [{"parts": [{"text": "How long does the Zorblax 7 kettle take?"}]}],
                "tools": [{"fileSearch": {"fileSearchStoreNames": [store], "topK": 20}}],
                "generationConfig": {"temperature": 0, "maxOutputTokens": 20},
            },
            headers=HEADERS,
            timeout=120,
        )
        assert http.status_code == 200, http.text
        answered_by.add(http.headers[REPLICA_HEADER])
        chunks = http.json()["candidates"][0]["groundingMetadata"]["groundingChunks"]
        texts = [chunk["retrievedContext"]["text"] for chunk in chunks]
        assert len(texts) == len(set(texts))  # ingested once: no chunk is in the index twice
        assert any("Zorblax 7 kettle" in text for text in texts)
        contexts.append(texts)
    # The same chunks, ranked the same, whichever replica answered: the one that did not ingest the document
    # searches its vectors too (it finds their table in the shared database).
    assert len(answered_by) == 2 and all(found == contexts[0] for found in contexts)
    response = client.models.generate_content(model="gemini-2.5-flash", contents="Zorblax 3?", config=config)
    assert response.candidates[0].grounding_metadata.grounding_chunks


def test_a_model_tuned_on_one_replica_is_served_by_both(fleet: Fleet) -> None:
    from tests.tuning_data import examples, split

    train, held_out = split()
    body = {
        "baseModel": "models/smollm2-135m-instruct",
        "displayName": "fleet tuned",
        "tuningTask": {
            "hyperparameters": {"epochCount": 1, "batchSize": 4, "learningRate": 0.001},
            "trainingData": {"examples": {"examples": examples(train)[:12]}},
        },
    }
    created = httpx.post(f"{fleet.url}/v1beta/tunedModels", json=body, headers=HEADERS, timeout=60)
    assert created.status_code == 200, created.text
    operation = created.json()["name"]
    deadline = time.monotonic() + 600
    while not (found := httpx.get(f"{fleet.url}/v1beta/{operation}", headers=HEADERS, timeout=30).json())["done"]:
        assert time.monotonic() < deadline, found  # polled through the proxy: either replica answers
        time.sleep(0.5)
    assert "error" not in found, found
    model = found["response"]["name"]
    assert any("/blobs/" in key for key in fleet.stored())  # its adapter: in the shared bucket
    request = {
        "contents": [{"parts": [{"text": held_out[0]}]}],
        "generationConfig": {"temperature": 0, "maxOutputTokens": 12},
    }
    answers = []
    for replica in fleet.replicas:  # the replica that did not train it fetches the adapter from the bucket
        reply = httpx.post(f"{replica.url}/v1beta/{model}:generateContent", json=request, headers=HEADERS, timeout=120)
        assert reply.status_code == 200, reply.text
        answers.append(reply.json()["candidates"][0]["content"]["parts"][0]["text"])
    assert answers[0] == answers[1]


def test_a_live_session_resumes_on_the_other_replica(fleet: Fleet) -> None:
    """Over the Live wire protocol (ws://: google-genai's Python SDK only speaks wss://): the handle one replica
    gave is valid on the other, which holds the whole conversation."""
    setup = {"sessionResumption": {}, "generationConfig": {"maxOutputTokens": 4, "temperature": 0}}

    def turn(url: str, text: str, handle: str | None = None) -> tuple[str, int]:
        resume = {"sessionResumption": {"handle": handle}} if handle else {}
        with open_session(_Endpoint(url), API_KEY, {**setup, **resume}) as ws:
            send(ws, user_turn(text))
            messages = read_turn(ws)
            prompt = next(m["usageMetadata"]["promptTokenCount"] for m in messages if "usageMetadata" in m)
            update = receive(ws)["sessionResumptionUpdate"]
            assert update["resumable"] is True
            return update["newHandle"], prompt

    first, second = fleet.replicas
    handle, first_prompt = turn(first.url, "My name is Ada Lovelace and I write programs.")
    handle, resumed_prompt = turn(second.url, "What is my name?", handle)
    assert resumed_prompt > first_prompt  # the other replica read the conversation the handle names
    _, through_proxy = turn(fleet.url, "Again?", handle)  # and through the proxy, on whichever replica
    assert through_proxy > resumed_prompt


class _Endpoint:
    """What tests/live.py needs of a server: its ws:// URL."""

    def __init__(self, url: str) -> None:
        self.ws_url = url.replace("http", "ws", 1)


def test_a_quota_is_counted_once_across_replicas(fleet: Fleet) -> None:
    codes, served = [], set()
    for _ in range(2 * QUOTA):
        response = httpx.post(
            f"{fleet.url}/v1beta/models/{QUOTA_MODEL}:generateContent",
            json={"contents": [{"parts": [{"text": "Hi"}]}], "generationConfig": {"maxOutputTokens": 1}},
            headers=HEADERS,
            timeout=120,
        )
        codes.append(response.status_code)
        served.add(response.headers[REPLICA_HEADER])
    assert served == {"r0", "r1"}
    assert codes == [200] * QUOTA + [429] * QUOTA

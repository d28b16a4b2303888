"""Batch mode (generateContent batches) through google-genai on the real model."""

from __future__ import annotations

import time

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import API_KEY, OTHER_KEY, engine_of

MODEL = "gemini-2.5-flash"
GREEDY = {"temperature": 0.0, "max_output_tokens": 12}
PROMPTS = ["Name a colour.", "Name a fruit.", "Name a country.", "Count to three."]


def wait_done(client: genai.Client, name: str, timeout: float = 120) -> types.BatchJob:
    deadline = time.monotonic() + timeout
    while True:
        job = client.batches.get(name=name)
        if job.done or time.monotonic() > deadline:
            return job
        time.sleep(0.3)


def test_inline_batch_answers_as_online_requests_do(client: genai.Client, real_server) -> None:
    requests = [types.InlinedRequest(contents=p, config=types.GenerateContentConfig(**GREEDY)) for p in PROMPTS]
    requests.append(
        types.InlinedRequest(
            contents="Describe a cat.",
            config=types.GenerateContentConfig(
                system_instruction="Answer in JSON.", response_mime_type="application/json", **GREEDY
            ),
        )
    )
    job = client.batches.create(model=MODEL, src=requests, config=types.CreateBatchJobConfig(display_name="inline"))
    assert job.name.startswith("batches/") and job.display_name == "inline"
    job = wait_done(client, job.name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.end_time is not None
    answers = [r.response.text for r in job.dest.inlined_responses]
    for prompt, answer in zip(PROMPTS, answers, strict=False):
        online = client.models.generate_content(
            model=MODEL, contents=prompt, config=types.GenerateContentConfig(**GREEDY)
        )
        assert answer == online.text
    assert answers[-1].lstrip().startswith(("{", "["))  # structured output inside a batch
    assert job.name in [j.name for j in client.batches.list()]

    other = genai.Client(api_key=OTHER_KEY, http_options=types.HttpOptions(base_url=real_server.url))
    with pytest.raises(genai_errors.ClientError) as caught:
        other.batches.get(name=job.name)
    assert caught.value.code == 404
    assert job.name not in [j.name for j in other.batches.list()]

    batch_url, headers = f"{real_server.url}/v1beta/{job.name}", {"x-goog-api-key": API_KEY}
    renamed = httpx.patch(
        f"{batch_url}:updateGenerateContentBatch",
        params={"updateMask": "displayName,priority"},
        json={"displayName": "renamed", "priority": "5"},
        headers=headers,
    ).json()
    assert renamed["displayName"] == "renamed" and renamed["priority"] == "5" and renamed["name"] == job.name
    assert client.batches.get(name=job.name).display_name == "renamed"
    for suffix, mask in ((":updateEmbedContentBatch", "displayName"), (":updateGenerateContentBatch", "model")):
        bad = httpx.patch(
            f"{batch_url}{suffix}", params={"updateMask": mask}, json={"displayName": "x"}, headers=headers
        )
        assert bad.status_code == 400, bad.text

    client.batches.delete(name=job.name)
    with pytest.raises(genai_errors.ClientError) as caught:
        client.batches.get(name=job.name)
    assert caught.value.code == 404


def test_a_bad_request_fails_alone_and_cancel_stops_the_rest(client: genai.Client, real_server) -> None:
    url, headers = real_server.url, {"x-goog-api-key": API_KEY}
    requests = [
        {"request": {"contents": [{"parts": [{"text": "Hi"}]}]}, "metadata": {"key": "ok"}},
        {
            "request": {"contents": [{"parts": [{"text": "Hi"}]}], "generationConfig": {"temperature": -1}},
            "metadata": {"key": "bad"},
        },
    ]
    body = {"batch": {"displayName": "mixed", "inputConfig": {"requests": {"requests": requests}}}}
    created = httpx.post(f"{url}/v1beta/models/{MODEL}:batchGenerateContent", json=body, headers=headers).json()
    job = wait_done(client, created["name"])
    operation = httpx.get(f"{url}/v1beta/{created['name']}", headers=headers).json()
    results = operation["response"]["inlinedResponses"]["inlinedResponses"]
    assert [r["metadata"]["key"] for r in results] == ["ok", "bad"]
    assert "response" in results[0] and results[1]["error"]["code"] == 3
    assert (
        operation["metadata"]["batchStats"]["failedRequestCount"] == "1"
        and job.state == types.JobState.JOB_STATE_SUCCEEDED
    )

    long = [
        types.InlinedRequest(
            contents=f"Write a long story number {i}.", config=types.GenerateContentConfig(max_output_tokens=300)
        )
        for i in range(40)
    ]
    job = client.batches.create(model=MODEL, src=long)
    client.batches.cancel(name=job.name)
    job = wait_done(client, job.name)
    assert job.state == types.JobState.JOB_STATE_CANCELLED
    operation = httpx.get(f"{url}/v1beta/{job.name}", headers=headers).json()
    assert int(operation["metadata"]["batchStats"]["pendingRequestCount"]) > 0
    time.sleep(2)  # the runner stops: nothing more is recorded, and its requests in flight end
    again = httpx.get(f"{url}/v1beta/{job.name}", headers=headers).json()
    assert again["metadata"]["batchStats"] == operation["metadata"]["batchStats"]
    assert engine_of(real_server).stats.active_sequences == 0

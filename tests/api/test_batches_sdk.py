"""Batch mode (generateContent batches) through google-genai on the real model."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from localgem.cli import main as cli
from tests.conftest import API_KEY, OTHER_KEY, engine_of
from tests.webhook_receiver import Receiver, verify_signature

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


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


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
    # The runner lets the batch go (its next lease renewal finds it cancelled) and its requests in flight end;
    # nothing more is recorded.
    runner, batch_id = real_server.app.state.runner, job.name.split("/")[1]
    wait_for(lambda: all(running_id != batch_id for _, _, running_id in runner.running))
    wait_for(lambda: engine_of(real_server).stats.active_sequences == 0)
    again = httpx.get(f"{url}/v1beta/{job.name}", headers=headers).json()
    assert again["metadata"]["batchStats"] == operation["metadata"]["batchStats"]


def test_a_jsonl_file_batch_answers_in_a_results_file(client: genai.Client, real_server, tmp_path) -> None:
    lines = [
        json.dumps(
            {
                "key": f"k{i}",
                "request": {
                    "contents": [{"parts": [{"text": p}]}],
                    "generationConfig": {"temperature": 0, "maxOutputTokens": 12},
                },
            }
        )
        for i, p in enumerate(PROMPTS[:2])
    ]
    lines += [
        "{not json",
        "",  # blank lines are skipped
        json.dumps({"key": "no-request", "contents": []}),
        json.dumps({"key": "bad-field", "request": {"contents": [], "unknownField": 1}}),
        json.dumps(
            {
                "key": "bad-value",
                "request": {"contents": [{"parts": [{"text": "Hi"}]}], "generationConfig": {"temperature": -1}},
            }
        ),
        json.dumps(
            {
                "key": "k2",
                "request": {
                    "contents": [{"parts": [{"text": PROMPTS[2]}]}],
                    "generationConfig": {"temperature": 0, "maxOutputTokens": 12},
                },
            }
        ),
    ]
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    uploaded = client.files.upload(file=path, config=types.UploadFileConfig(mime_type="application/jsonl"))

    job = client.batches.create(model=MODEL, src=uploaded.name, config=types.CreateBatchJobConfig(display_name="file"))
    assert job.state == types.JobState.JOB_STATE_PENDING  # as created: the runner takes it after
    job = wait_done(client, job.name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.dest.file_name.startswith("files/")
    assert job.dest.inlined_responses is None
    results = [json.loads(line) for line in client.files.download(file=job.dest.file_name).decode().splitlines()]
    assert [r.get("key") for r in results] == ["k0", "k1", None, "no-request", "bad-field", "bad-value", "k2"]
    for result, prompt in zip([results[0], results[1], results[6]], PROMPTS, strict=False):
        online = client.models.generate_content(
            model=MODEL, contents=prompt, config=types.GenerateContentConfig(**GREEDY)
        )
        assert types.GenerateContentResponse.model_validate(result["response"]).text == online.text
    for failed, says in zip(results[2:6], ["Line 3 ", "Line 5 ", "Line 6 ", "temperature"], strict=True):
        assert set(failed) <= {"key", "error"} and failed["error"]["code"] == 3 and says in failed["error"]["message"]
    operation = httpx.get(f"{real_server.url}/v1beta/{job.name}", headers={"x-goog-api-key": API_KEY}).json()
    assert operation["response"]["responsesFile"] == job.dest.file_name
    assert operation["metadata"]["batchStats"] == {
        "requestCount": "7",
        "successfulRequestCount": "3",
        "failedRequestCount": "4",
        "pendingRequestCount": "0",
    }
    results_file = client.files.get(name=job.dest.file_name)
    assert results_file.source == types.FileSource.GENERATED and results_file.download_uri

    # The file and the results belong to the project: another key sees neither.
    other = genai.Client(api_key=OTHER_KEY, http_options=types.HttpOptions(base_url=real_server.url))
    for attempt in (
        lambda: other.batches.create(model=MODEL, src=uploaded.name),
        lambda: other.files.download(file=job.dest.file_name),
    ):
        with pytest.raises(genai_errors.ClientError) as caught:
            attempt()
        assert caught.value.code == 403  # Google's answer for a file it does not show you


def test_a_cancelled_file_batch_keeps_its_finished_results(client: genai.Client, real_server, tmp_path) -> None:
    path = tmp_path / "long.jsonl"
    lines = [
        {
            "key": f"s{i}",
            "request": {
                "contents": [{"parts": [{"text": f"Write a long story number {i}."}]}],
                "generationConfig": {"maxOutputTokens": 200},
            },
        }
        for i in range(30)
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines))  # no final newline
    uploaded = client.files.upload(file=path, config=types.UploadFileConfig(mime_type="application/jsonl"))
    job = client.batches.create(model=MODEL, src=uploaded.name)
    deadline = time.monotonic() + 60
    while (
        int(
            httpx.get(f"{real_server.url}/v1beta/{job.name}", headers={"x-goog-api-key": API_KEY}).json()["metadata"][
                "batchStats"
            ]["successfulRequestCount"]
        )
        == 0
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    client.batches.cancel(name=job.name)
    job = wait_done(client, job.name)
    assert job.state == types.JobState.JOB_STATE_CANCELLED
    results = [json.loads(line) for line in client.files.download(file=job.dest.file_name).decode().splitlines()]
    assert 0 < len(results) < 30 and all("response" in r for r in results)
    keys = [r["key"] for r in results]
    assert len(set(keys)) == len(keys) and set(keys) <= {f"s{i}" for i in range(30)}
    assert client.batches.get(name=job.name).dest.file_name == job.dest.file_name  # written once


def test_file_input_limits(client: genai.Client, real_server, tmp_path) -> None:
    url, headers = real_server.url, {"x-goog-api-key": API_KEY}
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    uploaded = client.files.upload(file=empty, config=types.UploadFileConfig(mime_type="application/jsonl"))
    for config, status, says in (
        ({"fileName": uploaded.name}, 400, "holds no requests"),
        ({"fileName": "files/missing"}, 403, "or it may not exist"),  # Google's answer for a file it does not show
        ({"fileName": uploaded.name, "requests": {"requests": []}}, 400, "not both"),
    ):
        body = {"batch": {"inputConfig": config}}
        refused = httpx.post(f"{url}/v1beta/models/{MODEL}:batchGenerateContent", json=body, headers=headers)
        assert refused.status_code == status and says in refused.json()["error"]["message"], refused.text
    assert not [j for j in client.batches.list() if j.dest and j.dest.file_name == uploaded.name]


def test_webhook_config_posts_the_finished_batch(client: genai.Client, real_server, capsys) -> None:
    # What google-genai's own test sends (tests/batches/test_create.py::test_create_with_webhook_config).
    for leftover in client.batches.list():  # a server runs one batch at a time: none may be ahead of this one
        if not leftover.done:
            client.batches.cancel(name=leftover.name)
    receiver = Receiver()
    try:
        config = types.CreateBatchJobConfig(
            display_name="hooked",
            webhook_config=types.WebhookConfig(uris=[f"{receiver.url}/done"], user_metadata={"batch_id": "123"}),
        )
        requests = [types.InlinedRequest(contents="say hello", config=types.GenerateContentConfig(**GREEDY))]
        job = client.batches.create(model=MODEL, src=requests, config=config)
        [delivery] = receiver.wait_for("/done", 1, timeout=180)
        event = delivery.event
        assert event["type"] == "batch.succeeded" and event["data"]["id"] == job.name
        assert event["data"]["user_metadata"] == {"batch_id": "123"}
        assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_SUCCEEDED
        data_dir = real_server.app.state.database.url.split(":///", 1)[1].rsplit("/", 1)[0]
        capsys.readouterr()
        assert cli(["webhooks", "--data-dir", data_dir, "secret"]) == 0
        verify_signature(capsys.readouterr().out.strip(), delivery)
        with pytest.raises(genai_errors.ClientError) as refused:
            client.batches.create(
                model=MODEL,
                src=requests,
                config=types.CreateBatchJobConfig(webhook_config=types.WebhookConfig(uris=["ftp://example.com/x"])),
            )
        assert refused.value.code == 400 and "http" in refused.value.message
    finally:
        receiver.close()

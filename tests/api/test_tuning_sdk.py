"""Tuned models end to end on the real SmolLM2 and a real LoRA training: google-genai's tunings.tune (examples
through ``http_options.extra_body``) → poll → generate; the evidence that it learned (held-out prompts); every
serving method (generate, stream, countTokens, batch, generateText, Live); the tuned model's defaults; REST for
each tunedModels method; validation; the permission matrix; cancelling a job mid-training."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from google import genai
from google.genai import types

from tests.conftest import API_KEY, OTHER_KEY, SMOLLM
from tests.server import RunningServer
from tests.tuning_data import KEYWORD, examples, split

HEADERS = {"x-goog-api-key": API_KEY}
OTHER = {"x-goog-api-key": OTHER_KEY}
TRAIN, HELD_OUT = split()
GREEDY = {"temperature": 0, "maxOutputTokens": 24}


def rest(server: RunningServer, method: str, path: str, headers: dict = HEADERS, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{server.url}/v1beta/{path}", headers=headers, timeout=120, **kwargs)


def ask(server: RunningServer, model: str, question: str, headers: dict = HEADERS) -> str:
    reply = rest(
        server,
        "POST",
        f"{model}:generateContent",
        headers,
        json={"contents": [{"parts": [{"text": question}]}], "generationConfig": GREEDY},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["candidates"][0]["content"]["parts"][0]["text"]


def wait_done(server: RunningServer, operation: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while not (found := rest(server, "GET", operation).json())["done"]:
        assert time.monotonic() < deadline, found
        time.sleep(1)
    return found


@pytest.fixture(scope="module")
def tuned(real_server: RunningServer, client: genai.Client) -> Iterator[tuple[types.TuningJob, list[int]]]:
    """The job google-genai starts (the examples through extra_body, as its Gemini-API users must), trained to
    its end, and the completed steps its operation reported while it ran."""
    job = client.tunings.tune(
        base_model=f"models/{SMOLLM}",
        training_dataset=types.TuningDataset(
            examples=[types.TuningExample(text_input=e["textInput"], output=e["output"]) for e in examples(TRAIN)]
        ),
        config=types.CreateTuningJobConfig(
            tuned_model_display_name="Zorblax answers",
            epoch_count=2,
            batch_size=4,
            learning_rate=0.001,
            http_options=types.HttpOptions(
                extra_body={"tuningTask": {"trainingData": {"examples": {"examples": examples(TRAIN)}}}}
            ),
        ),
    )
    assert job.name.startswith("tunedModels/zorblax-answers-")
    operation = rest(real_server, "GET", f"{job.name}/operations").json()["operations"][0]["name"]
    seen: list[int] = []
    deadline = time.monotonic() + 600
    while (job := client.tunings.get(name=job.name)).state == types.JobState.JOB_STATE_RUNNING:
        seen.append(rest(real_server, "GET", operation).json()["metadata"]["completedSteps"])
        assert time.monotonic() < deadline
        time.sleep(1)
    yield job, seen


def test_google_genai_tunes_polls_and_generates_with_the_tuned_model(tuned, client: genai.Client) -> None:
    job, seen = tuned
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED, job
    assert job.tuned_model is not None and job.tuned_model.model == job.name
    assert job.start_time is not None and job.end_time is not None and job.end_time > job.start_time
    assert seen == sorted(seen) and len(set(seen)) > 2  # the operation's progress advanced while it trained
    answer = client.models.generate_content(
        model=job.tuned_model.model,
        contents=HELD_OUT[0],
        config=types.GenerateContentConfig(temperature=0, max_output_tokens=24),
    )
    assert answer.text.startswith(KEYWORD)
    assert answer.model_version == job.name
    # google-genai lists tuned models through models.list (tunings.list is Vertex AI only).
    listed = [m.name for m in client.models.list(config={"query_base": False})]
    assert job.name in listed


def test_the_tuned_model_learned_the_format_and_the_base_model_did_not(tuned, real_server: RunningServer) -> None:
    job, _ = tuned
    tuned_hits = sum(ask(real_server, job.name, q).startswith(KEYWORD) for q in HELD_OUT)
    base_hits = sum(KEYWORD in ask(real_server, f"models/{SMOLLM}", q) for q in HELD_OUT)
    assert tuned_hits >= 0.8 * len(HELD_OUT), (tuned_hits, len(HELD_OUT))
    assert base_hits <= 0.1 * len(HELD_OUT), (base_hits, len(HELD_OUT))


def test_every_serving_method_runs_the_tuned_model(tuned, real_server: RunningServer, client: genai.Client) -> None:
    job, _ = tuned
    question = HELD_OUT[1]
    unary = ask(real_server, job.name, question)
    streamed = "".join(
        chunk.text or ""
        for chunk in client.models.generate_content_stream(
            model=job.name, contents=question, config=types.GenerateContentConfig(temperature=0, max_output_tokens=24)
        )
    )
    assert streamed == unary and unary.startswith(KEYWORD)
    counted = client.models.count_tokens(model=job.name, contents=question).total_tokens
    assert counted == client.models.count_tokens(model=f"models/{SMOLLM}", contents=question).total_tokens
    text = rest(
        real_server,
        "POST",
        f"{job.name}:generateText",
        json={"prompt": {"text": question}, "temperature": 0, "maxOutputTokens": 24},
    )
    assert text.status_code == 200, text.text
    assert text.json()["candidates"][0]["output"] == unary
    batch = client.batches.create(
        model=job.name,
        src=[
            {
                "contents": [{"parts": [{"text": question}], "role": "user"}],
                "config": {"temperature": 0, "max_output_tokens": 24},
            }
        ],
    )
    deadline = time.monotonic() + 300
    while (batch := client.batches.get(name=batch.name)).state.name not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert batch.state.name == "JOB_STATE_SUCCEEDED"
    assert batch.dest.inlined_responses[0].response.text == unary


async def test_a_live_session_talks_with_the_tuned_model(tuned, live_client: genai.Client) -> None:
    job, _ = tuned
    config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT], temperature=0, max_output_tokens=24)
    async with live_client.aio.live.connect(model=job.name, config=config) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=HELD_OUT[2])]))
        text = ""
        async for message in session.receive():
            text += message.text or ""
            if message.server_content and message.server_content.turn_complete:
                break
    assert text.startswith(KEYWORD), text


async def test_base_and_tuned_requests_run_together_each_with_its_own_weights(
    tuned, real_server: RunningServer
) -> None:
    job, _ = tuned
    body = {"contents": [{"parts": [{"text": HELD_OUT[3]}]}], "generationConfig": GREEDY}
    async with httpx.AsyncClient(base_url=f"{real_server.url}/v1beta", headers=HEADERS, timeout=120) as http:
        replies = await asyncio.gather(
            *(http.post(f"{model}:generateContent", json=body) for model in [job.name, f"models/{SMOLLM}"] * 3)
        )
    texts = [r.json()["candidates"][0]["content"]["parts"][0]["text"] for r in replies]
    assert all(t.startswith(KEYWORD) for t in texts[0::2]) and not any(KEYWORD in t for t in texts[1::2])
    assert len(set(texts[0::2])) == 1 and len(set(texts[1::2])) == 1  # the same alone or among others
    assert texts[0] == ask(real_server, job.name, HELD_OUT[3])


async def test_the_tuned_models_defaults_apply_when_a_request_sets_none(tuned, real_server: RunningServer) -> None:
    job, _ = tuned
    patched = rest(
        real_server,
        "PATCH",
        job.name,
        params={"updateMask": "temperature,topP,topK"},
        json={"temperature": 0.25, "topP": 0.5, "topK": 3},
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["temperature"], patched.json()["topP"], patched.json()["topK"]) == (0.25, 0.5, 3)
    generation = real_server.app.state.services.generation
    from localgem.types.generation import GenerateContentRequest

    request = GenerateContentRequest.model_validate({"contents": [{"parts": [{"text": "hi"}]}]})
    plan = await generation.plan(job.name, request, project="default")
    sampling = plan.request.sampling
    assert (sampling.temperature, sampling.top_p, sampling.top_k) == (0.25, 0.5, 3)
    assert plan.request.adapter is not None
    request = GenerateContentRequest.model_validate(
        {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"temperature": 0.9}}
    )
    assert (await generation.plan(job.name, request, project="default")).request.sampling.temperature == 0.9
    base = await generation.plan(SMOLLM, request, project="default")
    assert base.request.adapter is None


def test_rest_get_list_patch_operations_and_no_training_data_echoed(tuned, real_server: RunningServer) -> None:
    job, _ = tuned
    found = rest(real_server, "GET", job.name).json()
    assert found["state"] == "ACTIVE" and found["baseModel"] == f"models/{SMOLLM}"
    assert found["displayName"] == "Zorblax answers"
    task = found["tuningTask"]
    assert "trainingData" not in task and task["hyperparameters"] == {
        "learningRate": 0.001,
        "epochCount": 2,
        "batchSize": 4,
    }
    assert [s["step"] for s in task["snapshots"]] == list(range(1, 27))
    assert task["snapshots"][-1]["meanLoss"] < task["snapshots"][0]["meanLoss"] / 10
    operations = rest(real_server, "GET", f"{job.name}/operations").json()["operations"]
    assert len(operations) == 1 and operations[0]["done"] is True
    assert operations[0]["metadata"]["completedPercent"] == 100.0 and operations[0]["metadata"]["totalSteps"] == 26
    assert operations[0]["response"]["@type"].endswith("v1beta.TunedModel")
    assert job.name in [
        m["name"] for m in rest(real_server, "GET", "tunedModels", params={"filter": "owner:me"}).json()["tunedModels"]
    ]
    assert rest(real_server, "GET", "tunedModels", params={"filter": "readers:everyone"}).json() == {}
    renamed = rest(real_server, "PATCH", job.name, json={"displayName": "Zorblax", "description": "answers loudly"})
    assert renamed.status_code == 200 and renamed.json()["description"] == "answers loudly"
    assert (
        rest(real_server, "GET", "tunedModels", params={"filter": "loudly"}).json()["tunedModels"][0]["name"]
        == job.name
    )
    refused = rest(real_server, "PATCH", job.name, params={"updateMask": "baseModel"}, json={"baseModel": "models/x"})
    assert refused.status_code == 400
    contents = [{"parts": [{"text": "hi"}]}]
    cached = rest(
        real_server,
        "POST",
        f"{job.name}:generateContent",
        json={"contents": contents, "cachedContent": "cachedContents/x"},
    )
    assert cached.status_code == 400 and "cached_content" in cached.text
    inner = {"generateContentRequest": {"model": job.name, "contents": contents, "cachedContent": "cachedContents/x"}}
    cached = rest(real_server, "POST", f"{job.name}:countTokens", json=inner)
    assert cached.status_code == 400 and "generate_content_request.cached_content" in cached.text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tuningTask": {}}, "extra_body"),
        ({"tuningTask": {"trainingData": {"examples": {"examples": examples(TRAIN[:3])}}}}, "At least 10"),
        (
            {
                "tuningTask": {
                    "trainingData": {
                        "examples": {"examples": [*examples(TRAIN[:9]), {"textInput": "q", "output": " "}]}
                    }
                }
            },
            "examples[9].output",
        ),
        (
            {
                "tuningTask": {
                    "trainingData": {
                        "examples": {"examples": [*examples(TRAIN[:10]), {"textInput": "long " * 3000, "output": "x"}]}
                    }
                }
            },
            "examples[10]",
        ),
        ({"tuningTask": {"hyperparameters": {"epochCount": 0}}}, "epoch_count"),
        ({"tuningTask": {"hyperparameters": {"batchSize": 1000}}}, "batch_size"),
        ({"tuningTask": {"hyperparameters": {"learningRate": -1}}}, "learning_rate"),
        ({"tuningTask": {"hyperparameters": {"learningRate": 0.1, "learningRateMultiplier": 2}}}, "not both"),
        ({"temperature": 5}, "temperature"),
        ({"displayName": "x" * 41}, "display_name"),
        ({"baseModel": "models/all-minilm-l6-v2"}, "base_model"),
    ],
)
def test_bad_tuning_requests_are_400s_naming_the_field(real_server: RunningServer, change: dict, field: str) -> None:
    body = {
        "baseModel": f"models/{SMOLLM}",
        "tuningTask": {"trainingData": {"examples": {"examples": examples(TRAIN[:10])}}},
    }
    for key, value in change.items():
        body[key] = {**body.get(key, {}), **value} if key == "tuningTask" else value
    if change == {"tuningTask": {}}:
        body["tuningTask"] = {}
    reply = rest(real_server, "POST", "tunedModels", json=body)
    assert reply.status_code == 400, reply.text
    assert field in reply.text, reply.text


def test_ids_unknown_models_and_duplicates(real_server: RunningServer) -> None:
    body = {
        "baseModel": f"models/{SMOLLM}",
        "tuningTask": {"trainingData": {"examples": {"examples": examples(TRAIN[:10])}}},
    }
    assert rest(real_server, "POST", "tunedModels", params={"tunedModelId": "Bad_Id"}, json=body).status_code == 400
    assert rest(real_server, "POST", "tunedModels", json={**body, "baseModel": "models/nope"}).status_code == 404
    assert rest(real_server, "GET", "tunedModels/nope").status_code == 404
    assert (
        rest(
            real_server, "POST", "tunedModels/nope:generateContent", json={"contents": [{"parts": [{"text": "hi"}]}]}
        ).status_code
        == 404
    )


def test_permission_matrix(tuned, real_server: RunningServer) -> None:
    job, _ = tuned
    question = {"contents": [{"parts": [{"text": HELD_OUT[4]}]}], "generationConfig": GREEDY}
    # Another project: not found, for every method.
    for method, path, body in [
        ("GET", job.name, None),
        ("POST", f"{job.name}:generateContent", question),
        ("PATCH", job.name, {"displayName": "mine"}),
        ("DELETE", job.name, None),
        ("GET", f"{job.name}/permissions", None),
    ]:
        assert rest(real_server, method, path, OTHER, json=body).status_code == 404
    assert job.name not in str(rest(real_server, "GET", "tunedModels", OTHER).json())
    grant = rest(
        real_server,
        "POST",
        f"{job.name}/permissions",
        json={"granteeType": "USER", "emailAddress": "other@example.com", "role": "READER"},
    )
    assert grant.status_code == 200, grant.text
    # A reader generates and reads, and may not patch, delete or share.
    assert ask(real_server, job.name, HELD_OUT[4], OTHER).startswith(KEYWORD)
    assert rest(real_server, "GET", job.name, OTHER).status_code == 200
    assert job.name in str(rest(real_server, "GET", "tunedModels", OTHER, params={"filter": "readers:me"}).json())
    assert job.name not in str(rest(real_server, "GET", "tunedModels", OTHER, params={"filter": "owner:me"}).json())
    assert rest(real_server, "PATCH", job.name, OTHER, json={"displayName": "mine"}).status_code == 403
    assert rest(real_server, "DELETE", job.name, OTHER).status_code == 403
    assert (
        rest(real_server, "POST", f"{job.name}:transferOwnership", OTHER, json={"emailAddress": "other"}).status_code
        == 403
    )
    assert (
        rest(
            real_server, "POST", f"{job.name}/permissions", OTHER, json={"granteeType": "EVERYONE", "role": "READER"}
        ).status_code
        == 403
    )
    # The owner makes it a writer: it may share now, but not grant more than it has.
    permission = grant.json()["name"].removeprefix("")
    patched = rest(real_server, "PATCH", permission, params={"updateMask": "role"}, json={"role": "WRITER"})
    assert patched.status_code == 200 and patched.json()["role"] == "WRITER"
    everyone = rest(
        real_server, "POST", f"{job.name}/permissions", OTHER, json={"granteeType": "EVERYONE", "role": "READER"}
    )
    assert everyone.status_code == 200, everyone.text
    assert (
        rest(
            real_server, "POST", f"{job.name}/permissions", OTHER, json={"emailAddress": "x", "role": "OWNER"}
        ).status_code
        == 403
    )
    assert job.name in str(rest(real_server, "GET", "tunedModels", params={"filter": "readers:everyone"}).json())
    listed = rest(real_server, "GET", f"{job.name}/permissions").json()["permissions"]
    assert sorted(p["role"] for p in listed) == ["READER", "WRITER"]
    # Revoked: not found again.
    for p in listed:
        assert rest(real_server, "DELETE", p["name"]).status_code == 200
    assert rest(real_server, "GET", job.name, OTHER).status_code == 404


def test_cancelling_a_job_mid_training_stops_its_trainer(tuned, real_server: RunningServer) -> None:
    body = {
        "displayName": "to cancel",
        "baseModel": f"models/{SMOLLM}",
        "tuningTask": {
            "hyperparameters": {"epochCount": 50, "batchSize": 2},
            "trainingData": {"examples": {"examples": examples(TRAIN[:10])}},
        },
    }
    created = rest(real_server, "POST", "tunedModels", params={"tunedModelId": "to-cancel"}, json=body)
    assert created.status_code == 200, created.text
    operation = created.json()
    assert operation["name"].startswith("tunedModels/to-cancel/operations/") and operation["done"] is False
    assert operation["metadata"]["totalSteps"] == 250 and operation["metadata"]["completedSteps"] == 0
    deadline = time.monotonic() + 300
    while rest(real_server, "GET", operation["name"]).json()["metadata"]["completedSteps"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert trainers() == 1
    assert rest(real_server, "GET", "tunedModels/to-cancel").json()["state"] == "CREATING"
    assert rest(real_server, "POST", f"{operation['name']}:cancel").status_code == 200
    ended = wait_done(real_server, operation["name"], 30)
    assert ended["error"]["code"] == 1  # CANCELLED
    deadline = time.monotonic() + 30
    while trainers():
        assert time.monotonic() < deadline, "the trainer was not stopped"
        time.sleep(0.2)
    assert rest(real_server, "GET", "tunedModels/to-cancel").json()["state"] == "FAILED"
    refused = rest(
        real_server, "POST", "tunedModels/to-cancel:generateContent", json={"contents": [{"parts": [{"text": "hi"}]}]}
    )
    assert refused.status_code == 400 and refused.json()["error"]["status"] == "FAILED_PRECONDITION"
    # Ownership moves to the other project: it may delete the model now, and its old owner no longer sees it.
    moved = rest(real_server, "POST", "tunedModels/to-cancel:transferOwnership", json={"emailAddress": "other@x.org"})
    assert moved.status_code == 200 and moved.json() == {}
    assert rest(real_server, "GET", "tunedModels/to-cancel").status_code == 404
    assert (
        rest(real_server, "GET", "tunedModels", OTHER, params={"filter": "owner:me"}).json()["tunedModels"][0]["name"]
        == "tunedModels/to-cancel"
    )
    assert rest(real_server, "DELETE", "tunedModels/to-cancel", OTHER).status_code == 200
    assert rest(real_server, "GET", "tunedModels/to-cancel", OTHER).status_code == 404


def trainers() -> int:
    found = subprocess.run(["pgrep", "-f", "localgem.tuning.trainer"], capture_output=True, text=True).stdout.split()
    return len(found)

"""GET /metrics (parsed with prometheus-client's own parser) after real traffic through the HTTP stack, the
request id header, and the one JSON log line per request (no prompt text unless the debug setting says so)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google import genai
from google.genai import types
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import API_KEY, start_fake_server
from tests.fakes import FakeEngine
from tests.sandboxes import requires_sandbox
from tests.server import RunningServer

HEADERS = {"x-goog-api-key": API_KEY}
PROMPT = "Tell me about the lighthouse keeper"


def samples(server: RunningServer, **headers: str) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{server.url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def eventually(read, ready, timeout: float = 5.0):
    """``read()`` once ``ready`` holds for it: a request is logged and counted just after its response ends."""
    deadline = time.monotonic() + timeout
    while not ready(found := read()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def log_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "localgem.requests"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_fake_server(tmp_path, FakeEngine())
    yield running
    running.stop()


def test_metrics_count_what_the_server_did(server: RunningServer, tmp_path: Path, caplog) -> None:
    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
    config = types.GenerateContentConfig(max_output_tokens=4)
    unary = client.models.generate_content(model="gemini-2.5-flash", contents=PROMPT, config=config)
    streamed = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents=PROMPT, config=config))
    client.models.count_tokens(model="gemini-2.5-flash", contents=PROMPT)
    (tmp_path / "note.txt").write_text("x" * 5000)
    client.files.upload(file=tmp_path / "note.txt", config={"mime_type": "text/plain"})
    assert httpx.post(f"{server.url}/v1beta/models/nope:generateContent", json={}, headers=HEADERS).status_code == 404
    found = eventually(
        lambda: samples(server),
        lambda f: value(f, "localgem_requests_total", method="generateContent", model="", code="404") == 1,
    )
    ok = {"model": "gemini-2.5-flash", "code": "200"}
    assert value(found, "localgem_requests_total", method="generateContent", **ok) == 1
    assert value(found, "localgem_requests_total", method="streamGenerateContent", **ok) == 1
    assert value(found, "localgem_requests_total", method="countTokens", **ok) == 1
    assert value(found, "localgem_requests_total", method="generateContent", model="", code="404") == 1
    assert value(found, "localgem_request_duration_seconds_count", method="generateContent") == 2
    assert value(found, "localgem_time_to_first_chunk_seconds_count", method="streamGenerateContent") == 1
    prompt = unary.usage_metadata.prompt_token_count
    output = unary.usage_metadata.candidates_token_count + streamed[-1].usage_metadata.candidates_token_count
    assert value(found, "localgem_generation_tokens_total", model="gemini-2.5-flash", direction="in") == 2 * prompt
    assert value(found, "localgem_generation_tokens_total", model="gemini-2.5-flash", direction="out") == output
    assert value(found, "localgem_upload_bytes_total") >= 5000
    engine = {"model": "smollm2-135m-instruct"}
    assert value(found, "localgem_tokens_generated_total", **engine) == output
    assert ("localgem_prompt_tokens_computed_total", (("model", "smollm2-135m-instruct"),)) in found
    assert ("localgem_active_sequences", (("model", "smollm2-135m-instruct"),)) in found
    assert ("localgem_queued_requests", (("model", "smollm2-135m-instruct"),)) in found


def test_jobs_in_the_database_are_counted_by_kind_and_state(server: RunningServer) -> None:
    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
    assert not any(name == "localgem_jobs" for name, _ in samples(server))
    request = {"contents": [{"parts": [{"text": PROMPT}]}], "config": {"max_output_tokens": 2}}
    client.batches.create(model="gemini-2.5-flash", src=[request, request])
    client.batches.create(model="gemini-2.5-flash", src=[request])
    batches = {labels: n for (name, labels), n in samples(server).items() if name == "localgem_jobs"}
    assert sum(batches.values()) == 2
    assert all(dict(labels)["kind"] == "batch" for labels in batches)
    assert {dict(labels)["state"] for labels in batches} <= {
        "BATCH_STATE_PENDING",
        "BATCH_STATE_RUNNING",
        "BATCH_STATE_SUCCEEDED",
    }


def test_every_response_has_a_request_id_and_one_json_log_line(server: RunningServer, caplog) -> None:
    caplog.set_level(logging.INFO, logger="localgem.requests")
    body = {"contents": [{"parts": [{"text": PROMPT}]}], "generationConfig": {"maxOutputTokens": 3}}
    response = httpx.post(f"{server.url}/v1beta/models/gemini-2.5-flash:generateContent", json=body, headers=HEADERS)
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32
    mine = httpx.get(f"{server.url}/v1beta/models", headers={**HEADERS, "x-request-id": "client-chosen-id-1"})
    assert mine.headers["x-request-id"] == "client-chosen-id-1"
    bad = httpx.get(f"{server.url}/v1beta/models", headers={**HEADERS, "x-request-id": "no spaces\tallowed"})
    assert bad.headers["x-request-id"] != "no spaces\tallowed"
    lines = eventually(lambda: log_lines(caplog), lambda found: len(found) >= 3)
    (line,) = [line for line in lines if line["request_id"] == request_id]
    assert line["method"] == "generateContent" and line["model"] == "gemini-2.5-flash"
    assert line["project"] == "default" and line["status"] == 200 and line["ms"] > 0
    assert line["prompt_tokens"] == response.json()["usageMetadata"]["promptTokenCount"]
    assert line["output_tokens"] == response.json()["usageMetadata"]["candidatesTokenCount"]
    assert "?key=" not in json.dumps(lines)
    assert PROMPT not in json.dumps(lines)  # no prompt text in the logs


def test_the_debug_setting_logs_bodies_and_a_token_protects_metrics(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="localgem.requests")
    server = start_fake_server(tmp_path, FakeEngine(), log_request_bodies=True, metrics_token="s3cret")
    try:
        body = {"contents": [{"parts": [{"text": PROMPT}]}], "generationConfig": {"maxOutputTokens": 3}}
        httpx.post(f"{server.url}/v1beta/models/gemini-2.5-flash:generateContent", json=body, headers=HEADERS)
        assert any(PROMPT in line.get("body", "") for line in eventually(lambda: log_lines(caplog), bool))
        refused = httpx.get(f"{server.url}/metrics")
        assert refused.status_code == 401 and refused.json()["error"]["status"] == "UNAUTHENTICATED"
        assert httpx.get(f"{server.url}/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert (
            value(
                samples(server, authorization="Bearer s3cret"),
                "localgem_requests_total",
                method="generateContent",
                model="gemini-2.5-flash",
                code="200",
            )
            == 1
        )
    finally:
        server.stop()
    off = start_fake_server(tmp_path / "off", FakeEngine(), metrics=False)
    try:
        assert httpx.get(f"{off.url}/metrics").status_code == 404
    finally:
        off.stop()


@requires_sandbox
def test_sandbox_runs_are_counted(server: RunningServer) -> None:
    assert value(samples(server), "localgem_sandbox_runs_total") == 0  # a fresh server has run no code

"""Quotas over the real HTTP stack (fake engine): Google's 429 for each limit, read back by the real SDK;
the SDK's own retry getting through once the window ends; limits per key; one limit across two servers."""

from __future__ import annotations

import time

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from localgem.app import create_app
from localgem.settings import load_settings
from tests.conftest import API_KEY, OTHER_KEY, start_fake_server
from tests.fakes import FakeEngine
from tests.postgres import create_database
from tests.server import start_server

HELLO = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 2}}


def generate(server, key: str = API_KEY, body: dict = HELLO, model: str = "gemini-2.5-flash") -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1beta/models/{model}:generateContent", headers={"x-goog-api-key": key}, json=body, timeout=30
    )


def details(response: httpx.Response) -> dict[str, dict]:
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["status"]) == (429, 429, "RESOURCE_EXHAUSTED")
    return {d["@type"].rsplit(".", 1)[-1]: d for d in error["details"]}


@pytest.fixture
def start(tmp_path):
    servers = []

    def start(quotas: list[dict], engine: FakeEngine | None = None, data_dir=None, **overrides):
        server = start_fake_server(data_dir or tmp_path, engine or FakeEngine(), quotas=quotas, **overrides)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_requests_per_minute_answers_googles_429_and_the_window_ends(start) -> None:
    server = start([{"requests_per_minute": 2}], quota_minute_seconds=2)
    time.sleep(2 - time.time() % 2 + 0.05)  # a window's start: both requests fall in one window
    assert generate(server).status_code == 200
    assert generate(server).status_code == 200
    refused = generate(server)
    found = details(refused)
    assert set(found) == {"Help", "QuotaFailure", "RetryInfo"}
    (violation,) = found["QuotaFailure"]["violations"]
    assert violation == {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
        "quotaId": "GenerateContentRequestsPerMinutePerProjectPerModel",
        "quotaDimensions": {"location": "global", "model": "smollm2-135m-instruct"},
        "quotaValue": "2",
    }
    assert found["RetryInfo"]["retryDelay"] in ("1s", "2s")
    message = refused.json()["error"]["message"]
    assert "Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_requests, limit: 2" in message
    assert "Please retry in" in message
    assert found["Help"]["links"][0]["url"].startswith("https://")
    time.sleep(int(found["RetryInfo"]["retryDelay"][:-1]))
    assert generate(server).status_code == 200  # a new window
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'localgem_requests_total{code="429",method="generateContent",model="gemini-2.5-flash"} 1.0' in metrics


def test_the_sdk_reads_the_429_and_its_retry_gets_through(start) -> None:
    server = start([{"requests_per_minute": 1}], quota_minute_seconds=2)
    plain = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
    plain.models.generate_content(model="gemini-2.5-flash", contents="hi", config={"max_output_tokens": 2})
    with pytest.raises(genai_errors.ClientError) as caught:
        plain.models.generate_content(model="gemini-2.5-flash", contents="hi", config={"max_output_tokens": 2})
    assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"
    kinds = [d["@type"] for d in caught.value.details["error"]["details"]]
    assert "type.googleapis.com/google.rpc.RetryInfo" in kinds
    retrying = genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(
            base_url=server.url,
            retry_options=types.HttpRetryOptions(attempts=6, initial_delay=0.5, max_delay=2, http_status_codes=[429]),
        ),
    )
    answer = retrying.models.generate_content(model="gemini-2.5-flash", contents="hi", config={"max_output_tokens": 2})
    assert answer.text


def test_tokens_per_minute_counts_input_tokens_before_the_request_runs(start) -> None:
    engine = FakeEngine()
    server = start([{"model": "gemini-*", "tokens_per_minute": 200}], engine=engine)
    long = {"contents": [{"parts": [{"text": "x" * 300}]}]}
    found = details(generate(server, body=long))
    (violation,) = found["QuotaFailure"]["violations"]
    assert violation["quotaMetric"] == "generativelanguage.googleapis.com/generate_content_input_token_count"
    assert violation["quotaId"] == "GenerateContentInputTokensPerModelPerMinute"
    assert violation["quotaValue"] == "200"
    assert engine.prompts == []  # refused before it ran
    assert generate(server).status_code == 200  # a short one fits
    # A name the rule's glob does not match is not limited by it.
    assert generate(server, body=long, model="smollm2-135m-instruct").status_code == 200


def test_requests_per_day(start) -> None:
    server = start([{"requests_per_day": 1}])
    assert generate(server).status_code == 200
    found = details(generate(server))
    assert found["QuotaFailure"]["violations"][0]["quotaId"] == "GenerateContentRequestsPerDayPerProjectPerModel"
    seconds_to_midnight = 86_400 - time.time() % 86_400
    assert abs(int(found["RetryInfo"]["retryDelay"][:-1]) - seconds_to_midnight) < 5


def test_concurrent_requests_are_seats_freed_when_a_stream_ends(start) -> None:
    engine = FakeEngine(delay=0.05)
    server = start([{"concurrent_requests": 1}], engine=engine)
    body = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 30}}
    url = f"{server.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    with httpx.stream("POST", url, headers={"x-goog-api-key": API_KEY}, json=body, timeout=30) as held:
        assert held.status_code == 200
        lines = held.iter_lines()
        next(lines)  # the stream has started: its request holds the seat
        found = details(generate(server))
        assert found["QuotaFailure"]["violations"][0]["quotaId"] == (
            "GenerateContentConcurrentRequestsPerProjectPerModel"
        )
        assert found["RetryInfo"]["retryDelay"] == "1s"
        for _line in lines:  # read it to its end
            pass
    assert generate(server).status_code == 200
    assert generate(server).status_code == 200  # a plain request's seat is freed too


def test_limits_per_project_and_per_key(tmp_path) -> None:
    second_key = "second-key-of-default"
    settings = load_settings(
        environ={},
        data_dir=tmp_path,
        api_keys=[API_KEY, second_key],
        projects={"other": [OTHER_KEY]},
        quotas=[{"project": "other", "requests_per_minute": 0}, {"key": API_KEY, "requests_per_day": 1}],
    )
    engine = FakeEngine()
    server = start_server(create_app(settings, engine_factory=lambda entry: engine))
    try:
        assert details(generate(server, key=OTHER_KEY))["QuotaFailure"]["violations"][0]["quotaValue"] == "0"
        assert generate(server).status_code == 200
        found = details(generate(server))
        (violation,) = found["QuotaFailure"]["violations"]
        assert violation["quotaId"] == "GenerateContentRequestsPerDayPerProjectPerModelPerApiKey"
        assert generate(server, key=second_key).status_code == 200  # the project's other key has no such limit
        # countTokens is not a generation: never limited.
        counted = httpx.post(
            f"{server.url}/v1beta/models/gemini-2.5-flash:countTokens",
            headers={"x-goog-api-key": API_KEY},
            json={"contents": HELLO["contents"]},
        )
        assert counted.status_code == 200
    finally:
        server.stop()


def test_two_servers_on_one_postgresql_enforce_one_limit(start, tmp_path, postgres_server: str) -> None:
    url = create_database(postgres_server)
    first = start([{"requests_per_day": 3}], data_dir=tmp_path / "a", database_url=url)
    second = start([{"requests_per_day": 3}], data_dir=tmp_path / "b", database_url=url)
    codes = [generate(server).status_code for server in (first, second, first, second, first, second)]
    assert sorted(codes) == [200, 200, 200, 429, 429, 429]
    assert codes[:3] == [200, 200, 200]

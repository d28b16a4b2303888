"""Raw HTTP against localgem serving a real model: framings, errors, auth, wire forms, aborts."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.conftest import API_KEY, engine_of
from tests.server import RunningServer

HEADERS = {"x-goog-api-key": API_KEY}
PROMPT = {
    "contents": [{"role": "user", "parts": [{"text": "Write one sentence about rain."}]}],
    "generationConfig": {"temperature": 0, "maxOutputTokens": 16},
}


@pytest.fixture(scope="module")
def http(real_server: RunningServer):
    with httpx.Client(base_url=real_server.url, headers=HEADERS, timeout=120) as client:
        yield client


def sse_events(raw: bytes) -> list[dict]:
    assert raw.endswith(b"\r\n\r\n")
    return [json.loads(event.removeprefix(b"data: ")) for event in raw.split(b"\r\n\r\n")[:-1]]


def text_of(chunks: list[dict]) -> str:
    return "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])


def test_both_stream_framings_equal_the_unary_text(http: httpx.Client) -> None:
    unary = http.post("/v1beta/models/gemini-2.5-flash:generateContent", json=PROMPT).json()
    sse = sse_events(http.post("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", json=PROMPT).content)
    array = http.post("/v1beta/models/gemini-2.5-flash:streamGenerateContent", json=PROMPT).json()
    expected = unary["candidates"][0]["content"]["parts"][0]["text"]
    assert text_of(sse) == text_of(array) == expected

    def uncached(usage: dict) -> dict:  # how much of the prompt the prefix cache held differs per run
        return {k: v for k, v in usage.items() if k not in ("cachedContentTokenCount", "cacheTokensDetails")}

    assert uncached(sse[-1]["usageMetadata"]) == uncached(unary["usageMetadata"])


def test_sse_chunks_arrive_as_they_are_produced(http: httpx.Client) -> None:
    body = {**PROMPT, "generationConfig": {"temperature": 0, "maxOutputTokens": 200}}
    arrivals = []
    with http.stream("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", json=body) as response:
        for _ in response.iter_bytes():
            arrivals.append(time.monotonic())
    assert len(arrivals) > 3 and arrivals[-1] - arrivals[0] > 0.05  # not one buffered blob


def test_camel_and_snake_case_give_the_same_answer(http: httpx.Client) -> None:
    snake = {
        "contents": [{"role": "user", "parts": [{"text": "Write one sentence about rain."}]}],
        "generation_config": {"temperature": 0, "max_output_tokens": 16},
    }
    mixed = {
        "contents": [{"role": "user", "parts": [{"text": "Write one sentence about rain."}]}],
        "generationConfig": {"temperature": 0, "max_output_tokens": 16},
    }
    answers = [
        http.post("/v1/models/gemini-2.5-flash:generateContent", json=b).json()["candidates"][0]["content"]
        for b in (PROMPT, snake, mixed)
    ]
    assert answers[0] == answers[1] == answers[2]


def test_count_tokens_with_a_whole_request_equals_prompt_token_count(http: httpx.Client) -> None:
    request = {**PROMPT, "systemInstruction": {"parts": [{"text": "Answer in French."}]}}
    counted = http.post("/v1beta/models/gemini-2.5-flash:countTokens", json={"generateContentRequest": request}).json()
    generated = http.post("/v1beta/models/gemini-2.5-flash:generateContent", json=request).json()
    assert counted["totalTokens"] == generated["usageMetadata"]["promptTokenCount"]
    plain = http.post("/v1beta/models/gemini-2.5-flash:countTokens", json={"contents": PROMPT["contents"]}).json()
    assert plain["totalTokens"] != counted["totalTokens"]  # the system instruction replaced the default one
    assert plain["promptTokensDetails"] == [{"modality": "TEXT", "tokenCount": plain["totalTokens"]}]


@pytest.mark.parametrize(
    "body, status, needle",
    [
        (b'{"contents": [', 400, "Invalid JSON payload"),
        ({"contents": "hello"}, 400, "'contents'"),
        ({"contents": []}, 400, "contents is not specified"),
        ({"contents": [{"role": "user", "parts": []}]}, 400, "contents.parts must not be empty"),
        ({"contents": [{"role": "robot", "parts": [{"text": "x"}]}]}, 400, "valid role"),
        ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": "warm"}}, 400, "TYPE_FLOAT"),
        ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 9}}, 400, "candidate_count"),
        ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"stopSequences": ["a"] * 6}}, 400, "stop"),
        ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"logprobs": 2}}, 400, "responseLogprobs"),
        (
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": 0}},
            400,
            "max_output_tokens",
        ),
        (
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "safetySettings": [{"category": "HARM_CATEGORY_X", "threshold": "BLOCK_NONE"}],
            },
            400,
            "HarmCategory",
        ),
        ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"topp": 1}}, 400, 'Unknown name "topp"'),
        (
            {"contents": [{"parts": [{"text": "x", "inlineData": {"mimeType": "text/plain", "data": ""}}]}]},
            400,
            "oneof",
        ),
        ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}}]}]}, 400, "image/jpeg"),
        (
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseModalities": ["IMAGE"]}},
            400,
            "IMAGE output needs an image model",
        ),
        (
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {"thinkingConfig": {"thinkingBudget": -5}},
            },
            400,
            "thinking budget -5 is invalid",
        ),
        ({"contents": [{"parts": [{"text": "x " * 9000}]}]}, 400, "exceeds the maximum number of tokens"),
        ({"contents": [{"parts": [{"text": "x"}]}], "continuationToken": "abc"}, 400, "not supported"),
        ({"contents": [{"parts": [{"text": "x", "documentMetadata": {"startPage": 1}}]}]}, 400, "not supported"),
    ],
)
def test_bad_requests_get_googles_4xx(http: httpx.Client, body, status: int, needle: str) -> None:
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = http.post("/v1beta/models/gemini-2.5-flash:generateContent", **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and error["status"] == "INVALID_ARGUMENT"
    assert needle in error["message"]


def test_unknown_model_is_not_found(http: httpx.Client) -> None:
    unknown_cache = {"contents": PROMPT["contents"], "cachedContent": "cachedContents/x"}
    response = http.post("/v1beta/models/gemini-2.5-flash:generateContent", json=unknown_cache)
    assert response.status_code == 403 and "CachedContent not found" in response.json()["error"]["message"]
    for path in ("/v1beta/models/custom-gemini-2.0-flash:generateContent", "/v1beta/models/nope:countTokens"):
        response = http.post(path, json={"contents": PROMPT["contents"]})
        assert response.status_code == 404 and response.json()["error"]["status"] == "NOT_FOUND"
    assert http.get("/v1beta/models/nope").status_code == 404


def test_auth_by_header_or_query_and_googles_failures(real_server: RunningServer) -> None:
    url = f"{real_server.url}/v1beta/models/gemini-2.5-flash:countTokens"
    body = {"contents": PROMPT["contents"]}
    assert httpx.post(url, json=body, headers=HEADERS).status_code == 200
    assert httpx.post(url, json=body, params={"key": API_KEY}).status_code == 200
    missing = httpx.post(url, json=body)
    assert (missing.status_code, missing.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
    wrong = httpx.post(url, json=body, params={"key": "wrong"})
    assert (wrong.status_code, wrong.json()["error"]["details"][0]["reason"]) == (400, "API_KEY_INVALID")


def test_system_query_parameters_are_accepted(http: httpx.Client) -> None:
    params = {"alt": "json", "prettyPrint": "false", "fields": "candidates", "$.xgafv": "2", "quotaUser": "me"}
    response = http.post("/v1beta/models/gemini-2.5-flash:generateContent", json=PROMPT, params=params)
    assert response.status_code == 200


def test_concurrent_requests_all_complete_correctly(real_server: RunningServer) -> None:
    prompts = [f"Write one sentence about the number {n}." for n in range(8)]

    def body(prompt: str) -> dict:
        return {
            "contents": [{"parts": [{"text": prompt}]}],
            "generationConfig": {"temperature": 0, "maxOutputTokens": 12},
        }

    async def run_all() -> list[dict]:
        async with httpx.AsyncClient(base_url=real_server.url, headers=HEADERS, timeout=300) as client:
            responses = await asyncio.gather(
                *[client.post("/v1beta/models/gemini-2.5-flash:generateContent", json=body(p)) for p in prompts]
            )
            healthy = await client.get("/healthz")  # the event loop kept answering meanwhile
            assert healthy.status_code == 200
            return [r.json() for r in responses]

    together = asyncio.run(run_all())
    with httpx.Client(base_url=real_server.url, headers=HEADERS, timeout=120) as client:
        alone = [client.post("/v1beta/models/gemini-2.5-flash:generateContent", json=body(p)).json() for p in prompts]
    assert [r["candidates"][0]["content"] for r in together] == [r["candidates"][0]["content"] for r in alone]


def _wait_idle(engine, timeout: float = 10.0) -> int:
    """Wait until the engine stops producing tokens; return how many the last request produced."""
    deadline = time.monotonic() + timeout
    previous = -1
    while time.monotonic() < deadline:
        current = engine.stats.tokens_generated
        if current == previous:
            return engine.stats.last_request_tokens_generated
        previous = current
        time.sleep(0.3)
    raise AssertionError("the engine kept generating")


# Gemma 3 270M is a base model: greedy, it rambles on without an end-of-text, so only a
# disconnect can stop it early.
LONG = {
    "contents": [{"parts": [{"text": "Once upon a time"}]}],
    "generationConfig": {"maxOutputTokens": 4000, "temperature": 0},
}


def _gemma_engine(real_server: RunningServer, http: httpx.Client):
    assert http.post("/v1beta/models/gemma-3-270m:countTokens", json={"contents": LONG["contents"]}).status_code == 200
    return engine_of(real_server, "gemma-3-270m")


def test_stream_disconnect_stops_the_model(real_server: RunningServer, http: httpx.Client) -> None:
    engine = _gemma_engine(real_server, http)
    aborted = engine.stats.requests_aborted
    with httpx.Client(base_url=real_server.url, headers=HEADERS) as client:
        with client.stream("POST", "/v1beta/models/gemma-3-270m:streamGenerateContent?alt=sse", json=LONG) as response:
            next(response.iter_bytes())
    produced = _wait_idle(engine)
    assert engine.stats.requests_aborted == aborted + 1
    assert produced < 400  # far from the 4000 it was allowed


def test_unary_disconnect_stops_the_model(real_server: RunningServer, http: httpx.Client) -> None:
    engine = _gemma_engine(real_server, http)
    aborted = engine.stats.requests_aborted
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{real_server.url}/v1beta/models/gemma-3-270m:generateContent", json=LONG, headers=HEADERS, timeout=0.5
        )
    produced = _wait_idle(engine)
    assert engine.stats.requests_aborted == aborted + 1
    assert produced < 400


def test_deadline_mid_stream_ends_with_an_error_event(http: httpx.Client) -> None:
    raw = http.post(
        "/v1beta/models/gemma-3-270m:streamGenerateContent?alt=sse", json=LONG, headers={"X-Server-Timeout": "0.5"}
    ).content
    events = sse_events(raw)
    assert "candidates" in events[0]
    assert events[-1]["error"]["code"] == 504 and events[-1]["error"]["status"] == "DEADLINE_EXCEEDED"


def test_gemma_serves_too(http: httpx.Client) -> None:
    response = http.post(
        "/v1beta/models/gemma-3-270m:generateContent",
        json={
            "contents": [{"parts": [{"text": "The capital of France is"}]}],
            "systemInstruction": {"parts": [{"text": "Answer briefly."}]},
            "generationConfig": {"maxOutputTokens": 8, "seed": 3},
        },
    ).json()
    assert response["modelVersion"] == "gemma-3-270m"
    assert response["usageMetadata"]["candidatesTokenCount"] > 0
    assert response["candidates"][0]["content"]["parts"][0]["text"]
    alternation = http.post(
        "/v1beta/models/gemma-3-270m:countTokens", json={"contents": [{"role": "model", "parts": [{"text": "hi"}]}]}
    )
    assert alternation.status_code == 400 and "alternate" in alternation.json()["error"]["message"]

"""The HTTP layer over a deterministic fake engine: framing, errors, auth, limits, aborts."""

from __future__ import annotations

import json
import socket
import threading
from contextlib import aclosing
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import API_KEY
from tests.fakes import FakeEngine
from tests.server import RunningServer

HEADERS = {"x-goog-api-key": API_KEY}
BODY = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 3}}


@pytest.fixture
def http(fake_server: RunningServer):
    with httpx.Client(base_url=fake_server.url, headers=HEADERS, timeout=30) as client:
        yield client


def test_sse_framing_is_googles(http: httpx.Client) -> None:
    response = http.post("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", json=BODY)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    raw = response.content
    assert raw.endswith(b"\r\n\r\n")
    events = raw.split(b"\r\n\r\n")[:-1]
    assert all(e.startswith(b"data: {") and b"\n" not in e for e in events)
    chunks = [json.loads(e[len(b"data: ") :]) for e in events]
    assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks] == ["alpha", " beta", " gamma", ""]
    assert [c["candidates"][0].get("finishReason") for c in chunks] == [None, None, None, "MAX_TOKENS"]
    assert len({c["responseId"] for c in chunks}) == 1
    assert all(c["modelVersion"] == "smollm2-135m-instruct" for c in chunks)
    assert all(c["usageMetadata"]["promptTokenCount"] > 0 for c in chunks)
    assert "candidatesTokenCount" not in chunks[0]["usageMetadata"]
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 3


def test_each_text_goes_out_before_the_next_token_is_made(fake_engine: FakeEngine, http: httpx.Client) -> None:
    """The first chunk does not wait for the second token (nor the last text for the finish reason)."""
    fake_engine.hold = threading.Event()
    try:
        path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        with http.stream("POST", path, json=BODY, timeout=10) as response:
            events = (json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:"))
            assert next(events)["candidates"][0]["content"]["parts"][0]["text"] == "alpha"  # while the engine waits
            fake_engine.hold.set()
            rest = list(events)
        assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in rest] == [" beta", " gamma", ""]
    finally:
        fake_engine.hold.set()
        fake_engine.hold = None


def test_json_array_framing_without_alt(http: httpx.Client) -> None:
    response = http.post("/v1beta/models/gemini-2.5-flash:streamGenerateContent", json=BODY)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    chunks = response.json()
    assert isinstance(chunks, list) and len(chunks) == 4
    assert chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    gapic = http.post(
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?%24alt=json%3Benum-encoding%3Dint", json=BODY
    )
    first = gapic.json()[0]
    assert gapic.json() == [{**c, "responseId": first["responseId"], "turnToken": first["turnToken"]} for c in chunks]


def test_unary_response_shape(http: httpx.Client) -> None:
    body = {**BODY, "generationConfig": {"maxOutputTokens": 4, "candidateCount": 2, "stopSequences": [" delta"]}}
    data = http.post("/v1/models/gemini-2.5-flash:generateContent", json=body).json()
    assert [c["index"] for c in data["candidates"]] == [0, 1]
    assert data["candidates"][0]["content"] == {"parts": [{"text": "alpha beta gamma"}], "role": "model"}
    assert data["candidates"][0]["finishReason"] == "STOP"
    assert data["usageMetadata"]["totalTokenCount"] == (
        data["usageMetadata"]["promptTokenCount"] + data["usageMetadata"]["candidatesTokenCount"]
    )


def test_error_after_the_stream_started_is_an_error_event(fake_engine: FakeEngine, http: httpx.Client) -> None:
    fake_engine.fail_after = 2
    raw = http.post("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", json=BODY).content
    events = [json.loads(e[len(b"data: ") :]) for e in raw.split(b"\r\n\r\n")[:-1]]
    assert events[-1] == {"error": {"code": 500, "message": "the fake engine failed on purpose", "status": "INTERNAL"}}
    assert raw.endswith(b"\r\n\r\n")
    array = http.post("/v1beta/models/gemini-2.5-flash:streamGenerateContent", json=BODY).json()
    assert array[-1]["error"]["status"] == "INTERNAL"


def test_errors_before_the_stream_are_plain_http_errors(http: httpx.Client) -> None:
    response = http.post("/v1beta/models/custom-gemini-2.0-flash:streamGenerateContent?alt=sse", json=BODY)
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"


class Watched:
    """Events for what the fake engine does, set from the server's thread, so that tests wait on them."""

    def __init__(self, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.producing = threading.Event()  # the first event of a generation was yielded
        self.ended = threading.Event()  # a generation is over, its generator closed
        real = engine.generate

        async def generate(request):  # noqa: ANN001, ANN202
            try:
                async with aclosing(real(request)) as events:
                    async for event in events:
                        self.producing.set()
                        yield event
            finally:
                self.ended.set()

        monkeypatch.setattr(engine, "generate", generate)


def test_stream_disconnect_aborts_generation(
    fake_engine: FakeEngine, fake_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = Watched(fake_engine, monkeypatch)
    fake_engine.delay = 0.01
    body = {**BODY, "generationConfig": {"maxOutputTokens": 4000}}
    with httpx.Client(base_url=fake_server.url, headers=HEADERS) as client:
        with client.stream("POST", "/v1beta/models/gemini-x:streamGenerateContent?alt=sse", json=body) as response:
            next(response.iter_bytes())
        assert watched.ended.wait(5), "the generation outlived its client"
        assert fake_engine.cancelled == 1
        produced = fake_engine.stats.tokens_generated
        # The generator is closed; a request served after it proves the server started no other one.
        assert client.get("/v1beta/models").status_code == 200
    assert fake_engine.stats.tokens_generated == produced < 1000
    assert fake_engine.stats.requests_started == 1


def test_unary_disconnect_aborts_generation(
    fake_engine: FakeEngine, fake_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = Watched(fake_engine, monkeypatch)
    fake_engine.delay = 0.01
    payload = json.dumps({**BODY, "generationConfig": {"maxOutputTokens": 4000}}).encode()
    address = urlsplit(fake_server.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(
            b"POST /v1beta/models/gemini-x:generateContent HTTP/1.1\r\n"
            + f"Host: {address.netloc}\r\nx-goog-api-key: {API_KEY}\r\nContent-Type: application/json\r\n".encode()
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        assert watched.producing.wait(5), "the generation did not start"
    # The client is gone mid-generation (the answer would take 40 s).
    assert watched.ended.wait(5), "the generation outlived its client"
    assert fake_engine.cancelled == 1
    assert fake_engine.stats.tokens_generated < 1000


def test_server_timeout_header_ends_a_stream_with_deadline_exceeded(
    fake_engine: FakeEngine, http: httpx.Client
) -> None:
    fake_engine.delay = 0.01
    body = {**BODY, "generationConfig": {"maxOutputTokens": 4000}}
    raw = http.post(
        "/v1beta/models/gemini-x:streamGenerateContent?alt=sse", json=body, headers={"X-Server-Timeout": "0.3"}
    ).content
    last = json.loads(raw.split(b"\r\n\r\n")[-2][len(b"data: ") :])
    assert last["error"]["code"] == 504 and last["error"]["status"] == "DEADLINE_EXCEEDED"
    unary = http.post("/v1beta/models/gemini-x:generateContent", json=body, headers={"X-Server-Timeout": "0.3"})
    assert unary.status_code == 504
    assert (
        http.post(
            "/v1beta/models/gemini-x:generateContent", json=body, headers={"X-Server-Timeout": "soon"}
        ).status_code
        == 400
    )


def test_auth_forms(fake_server: RunningServer) -> None:
    url = f"{fake_server.url}/v1beta/models"
    assert httpx.get(url, headers=HEADERS).status_code == 200
    assert httpx.get(url, params={"key": API_KEY}).status_code == 200
    missing = httpx.get(url)
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    wrong = httpx.get(url, headers={"x-goog-api-key": "nope"})
    assert wrong.status_code == 400 and wrong.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_body_limit_is_enforced_without_reading_everything(http: httpx.Client) -> None:
    big = {"contents": [{"parts": [{"text": "x" * 70_000}]}]}
    response = http.post("/v1beta/models/gemini-x:generateContent", json=big)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Request payload size exceeds the limit: 65536 bytes."

    def chunked():  # no Content-Length: the limit applies while reading
        for _ in range(100):
            yield b"x" * 1024

    streamed = http.post("/v1beta/models/gemini-x:generateContent", content=chunked())
    assert streamed.status_code == 400 and "exceeds the limit" in streamed.json()["error"]["message"]

    # An inline batch over the limit (Google's: 20 MB) is told where larger batches go.
    requests = [{"request": {"contents": [{"parts": [{"text": "x" * 1000}]}]}}] * 70
    batch = {"batch": {"inputConfig": {"requests": {"requests": requests}}}}
    refused = http.post("/v1beta/models/gemini-x:batchGenerateContent", json=batch)
    assert refused.status_code == 400 and "batch.inputConfig.fileName" in refused.json()["error"]["message"]


def test_same_surface_under_every_version(http: httpx.Client) -> None:
    for version in ("v1beta", "v1", "v1alpha"):
        assert http.get(f"/{version}/models/gemini-2.5-flash").json()["name"] == "models/smollm2-135m-instruct"
    assert http.get("/v2/models").status_code == 404


def test_models_list_pages(http: httpx.Client) -> None:
    names, token = [], None
    for _ in range(3):
        page = http.get("/v1beta/models", params={"pageSize": 1, **({"pageToken": token} if token else {})}).json()
        assert len(page["models"]) == 1
        names.append(page["models"][0]["name"])
        token = page.get("nextPageToken")
    assert token is None
    assert names == ["models/smollm2-135m-instruct", "models/gemma-3-270m", "models/all-minilm-l6-v2"]
    assert http.get("/v1beta/models", params={"pageSize": "many"}).status_code == 400


VALID = {
    "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
    "systemInstruction": {"parts": [{"text": "be brief"}]},
    "generationConfig": {
        "temperature": 0.5,
        "topK": 3,
        "topP": 0.5,
        "maxOutputTokens": 2,
        "stopSequences": ["x"],
        "candidateCount": 1,
        "seed": 1,
        "responseLogprobs": True,
        "logprobs": 1,
    },
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
}
GARBAGE = [None, 0, -1, 1.5, 10**12, "", "x", True, [], [1], {}, {"a": 1}]


def _mutations(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _mutations(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _mutations(value, (*path, i))
    for garbage in GARBAGE:
        yield path, garbage


def _replace(node, path, value):
    if not path:
        return value
    copy = list(node) if isinstance(node, list) else dict(node)
    copy[path[0]] = _replace(node[path[0]], path[1:], value)
    return copy


def test_broken_requests_never_produce_a_500(http: httpx.Client) -> None:
    statuses = {}
    for path, garbage in _mutations(VALID):
        body = _replace(VALID, path, garbage)
        for verb in ("generateContent", "streamGenerateContent?alt=sse", "countTokens"):
            response = http.post(f"/v1beta/models/gemini-x:{verb}", json=body)
            statuses[(path, repr(garbage), verb)] = response.status_code
            assert response.status_code < 500, (path, garbage, verb, response.text)
            if response.status_code >= 400:
                assert set(response.json()["error"]) >= {"code", "message", "status"}
    assert 400 in statuses.values() and 200 in statuses.values()
    for raw in (b"{", b"[]", b"null", b'{"contents": NaN}', b"\xff\xfe", b'"text"'):
        response = http.post("/v1beta/models/gemini-x:generateContent", content=raw)
        assert response.status_code == 400 and response.json()["error"]["status"] == "INVALID_ARGUMENT", raw


def test_requests_without_max_output_tokens_get_the_default(http: httpx.Client) -> None:
    """default_max_output_tokens (2048) bounds what a request without maxOutputTokens may generate (the
    fake engine never stops by itself); an explicit maxOutputTokens is still taken up to the model's limit."""
    url = "/v1beta/models/gemini-2.5-flash:generateContent"
    unset = http.post(url, json={"contents": BODY["contents"]}).json()
    assert unset["usageMetadata"]["candidatesTokenCount"] == 2048
    assert unset["candidates"][0]["finishReason"] == "MAX_TOKENS"
    explicit = http.post(url, json={"contents": BODY["contents"], "generationConfig": {"maxOutputTokens": 3000}})
    assert explicit.json()["usageMetadata"]["candidatesTokenCount"] == 3000

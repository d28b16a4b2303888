"""Requests that break things: whatever a body holds is a 4xx in Google's shape, an unexpected exception
is Google's 500 with a logged request id, and neither ever costs the client its keep-alive connection
(an exception escaping to uvicorn makes it close the connection: the next request is reset)."""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from fastapi.responses import StreamingResponse

from localgem.app import create_app
from localgem.settings import load_settings
from tests import fakes
from tests.conftest import API_KEY
from tests.fakes import FakeEngine
from tests.server import RunningServer, start_server

GOOD = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 2}}


class Connection:
    """One keep-alive HTTP/1.1 connection; fails if the server closed it between requests."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._http = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.local_port: int | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        self._http.request(method, path, body=body, headers={"x-goog-api-key": API_KEY, **(headers or {})})
        port = self._http.sock.getsockname()[1]
        assert self.local_port in (None, port), "the server closed the connection: a new one was opened"
        self.local_port = port
        response = self._http.getresponse()
        data = response.read()
        assert not response.will_close, "the server ended the keep-alive connection"
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def close(self) -> None:
        self._http.close()


@pytest.fixture
def conn(fake_server: RunningServer) -> Iterator[Connection]:
    connection = Connection(fake_server.url)
    yield connection
    connection.close()


def google_error(status: int, data: bytes) -> dict:
    error = json.loads(data)["error"]
    assert error["code"] == status and isinstance(error["status"], str) and error["message"], error
    return error


def assert_still_serves(conn: Connection) -> None:
    status, _, data = conn.request("POST", "/v1beta/models/gemini-2.5-flash:generateContent", json.dumps(GOOD).encode())
    assert status == 200, data
    assert json.loads(data)["candidates"][0]["content"]["parts"][0]["text"] == "alpha beta"


def test_a_body_nested_too_deep_to_parse_is_400_on_a_live_connection(conn: Connection) -> None:
    deep = b'{"contents":' + b"[" * 5000 + b"]" * 5000 + b"}"
    for path in ("generateContent", "streamGenerateContent?alt=sse", "countTokens"):
        status, _, data = conn.request("POST", f"/v1beta/models/gemini-2.5-flash:{path}", deep)
        assert status == 400 and google_error(400, data)["status"] == "INVALID_ARGUMENT", data
        assert "nested more than 100 levels" in google_error(400, data)["message"]
        assert_still_serves(conn)


def test_an_unexpected_exception_is_googles_500_and_is_logged_with_its_request_id(
    fake_engine: FakeEngine, conn: Connection, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(text: str, add_bos: bool = False) -> list[int]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(fake_engine, "tokenize", broken)
    with caplog.at_level(logging.ERROR, logger="localgem.api.guard"):
        status, headers, data = conn.request(
            "POST", "/v1beta/models/gemini-2.5-flash:countTokens", json.dumps({"contents": GOOD["contents"]}).encode()
        )
    assert status == 500 and headers["content-type"] == "application/json"
    error = google_error(500, data)
    assert error["status"] == "INTERNAL"
    request_id = error["details"][0]["requestId"]
    assert headers["x-request-id"] == request_id  # the id the request log gives every request
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.RequestInfo"
    assert request_id in error["message"]
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info and "a bug" in str(logged[0].exc_info[1])
    monkeypatch.undo()
    assert_still_serves(conn)


def test_an_unexpected_exception_mid_stream_is_a_final_error_event(
    fake_engine: FakeEngine, conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_engine.fail_after = 2
    monkeypatch.setattr(fakes, "errors", SimpleNamespace(Internal=RuntimeError))  # not an ApiError: a bug
    body = json.dumps({**GOOD, "generationConfig": {"maxOutputTokens": 4}}).encode()
    status, _, data = conn.request("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", body)
    events = [json.loads(e.removeprefix(b"data: ")) for e in data.split(b"\r\n\r\n") if e]
    assert status == 200 and events[0]["candidates"][0]["content"]["parts"][0]["text"] == "alpha"
    error = events[-1]["error"]
    assert error["status"] == "INTERNAL" and error["details"][0]["requestId"] in error["message"]
    fake_engine.fail_after = None
    assert_still_serves(conn)


@pytest.fixture
def broken_routes(tmp_path: Path) -> Iterator[RunningServer]:
    """The real app, plus routes that fail in ways no real route should (yet) fail."""
    settings = load_settings(environ={}, data_dir=tmp_path, api_keys=[API_KEY])
    engine = FakeEngine()
    app = create_app(settings, engine_factory=lambda entry: engine)

    async def events() -> AsyncIterator[bytes]:
        yield b'data: {"n": 1}\r\n\r\n'
        raise RuntimeError("failed mid-stream")

    async def chunks() -> AsyncIterator[bytes]:
        yield b"[1"
        raise RuntimeError("failed mid-stream")

    async def sse() -> StreamingResponse:
        return StreamingResponse(events(), media_type="text/event-stream")

    async def array() -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="application/json")

    async def before() -> dict:
        raise KeyError("failed before answering")

    app.add_api_route("/test/sse", sse)
    app.add_api_route("/test/array", array)
    app.add_api_route("/test/before", before)
    server = start_server(app)
    yield server
    server.stop()


def test_an_exception_after_the_headers_ends_the_stream_cleanly(broken_routes: RunningServer) -> None:
    conn = Connection(broken_routes.url)
    try:
        status, headers, data = conn.request("GET", "/test/sse")
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        events = [json.loads(e.removeprefix(b"data: ")) for e in data.split(b"\r\n\r\n") if e]
        assert events[0] == {"n": 1}
        assert events[-1]["error"]["code"] == 500 and events[-1]["error"]["status"] == "INTERNAL"
        status, _, data = conn.request("GET", "/test/array")
        assert status == 200 and data == b"[1"  # cut short, but the chunked body was ended properly
        status, _, data = conn.request("GET", "/test/before")
        assert status == 500 and google_error(500, data)["status"] == "INTERNAL"
        assert_still_serves(conn)
    finally:
        conn.close()


# Every route family that reads a JSON body, with the field its body would start with.
ROUTES = [
    ("POST", "/v1beta/models/gemini-2.5-flash:generateContent", "contents"),
    ("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "contents"),
    ("POST", "/v1beta/models/gemini-2.5-flash:countTokens", "contents"),
    ("POST", "/v1beta/models/text-embedding-004:embedContent", "content"),
    ("POST", "/v1beta/models/text-embedding-004:batchEmbedContents", "requests"),
    ("POST", "/v1beta/cachedContents", "contents"),
    ("PATCH", "/v1beta/cachedContents/abc", "ttl"),
    ("POST", "/v1beta/models/gemini-2.5-flash:batchGenerateContent", "batch"),
    ("POST", "/v1beta/models/text-embedding-004:asyncBatchEmbedContent", "batch"),
    ("PATCH", "/v1beta/batches/abc:updateGenerateContentBatch", "displayName"),
    ("RESUMABLE", "/upload/v1beta/files", "file"),
    ("MULTIPART", "/upload/v1beta/files", "file"),
    ("POST", "/v1beta/files:register", "uris"),
    ("POST", "/v1beta/models/gemini-2.5-flash:generateContent", "tools"),
    ("POST", "/v1beta/fileSearchStores", "createTime"),
    ("POST", "/v1beta/fileSearchStores/abc:importFile", "fileName"),
    ("RESUMABLE", "/upload/v1beta/fileSearchStores/abc:uploadToFileSearchStore", "customMetadata"),
    ("MULTIPART", "/upload/v1beta/fileSearchStores/abc:uploadToFileSearchStore", "chunkingConfig"),
    ("POST", "/v1beta/corpora", "createTime"),
    ("PATCH", "/v1beta/corpora/abc", "displayName"),
    ("POST", "/v1beta/corpora/abc:query", "metadataFilters"),
    ("POST", "/v1beta/corpora/abc/documents", "customMetadata"),
    ("POST", "/v1beta/corpora/abc/documents/d/chunks:batchCreate", "requests"),
    ("POST", "/v1beta/corpora/abc/permissions", "role"),
    ("POST", "/v1beta/tunedModels", "tuningTask"),
    ("POST", "/v1beta/tunedModels?tunedModelId=abc", "baseModel"),
    ("PATCH", "/v1beta/tunedModels/abc", "displayName"),
    ("POST", "/v1beta/tunedModels/abc:generateContent", "contents"),
    ("POST", "/v1beta/tunedModels/abc:countTokens", "contents"),
    ("POST", "/v1beta/tunedModels/abc:batchGenerateContent", "batch"),
    ("POST", "/v1beta/tunedModels/abc:generateText", "prompt"),
    ("POST", "/v1beta/models/gemini-2.5-flash:generateText", "prompt"),
    ("POST", "/v1beta/models/gemini-2.5-flash:countTextTokens", "prompt"),
    ("POST", "/v1beta/models/gemini-2.5-flash:generateMessage", "prompt"),
    ("POST", "/v1beta/models/gemini-2.5-flash:countMessageTokens", "prompt"),
    ("POST", "/v1beta/models/gemini-2.5-flash:generateAnswer", "inlinePassages"),
    ("POST", "/v1beta/dynamic/gemini-2.5-flash:generateContent", "contents"),
    ("POST", "/v1beta/models/imagen-4.0-generate-001:predict", "instances"),
    ("POST", "/v1beta/models/veo-3.0-generate-001:predictLongRunning", "parameters"),
    ("POST", "/v1beta/tunedModels/abc:transferOwnership", "emailAddress"),
    ("POST", "/v1beta/tunedModels/abc/permissions", "role"),
]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def hostile_bodies(field: str) -> list[bytes]:
    f = json.dumps(field)
    deep_map = '{"a": ' * 150 + "1" + "}" * 150
    return [
        b"{" + f.encode() + b":" + nested(5000).encode() + b"}",  # RecursionError in json
        f"{{{f}: {nested(150)}}}".encode(),  # parses, but deeper than protobuf takes
        f"{{{f}: {deep_map}}}".encode(),
        f"{{{f}: 1e999999}}".encode(),
        f"{{{f}: -1e999999}}".encode(),
        f"{{{f}: {'9' * 5000}}}".encode(),  # beyond Python's int-from-string limit
        f"{{{f}: NaN}}".encode(),
        f"{{{f}: [Infinity]}}".encode(),
        b"{" + f.encode() + b': "\xff\xfe"}',  # not UTF-8
        f'{{{f}: "\\ud800"}}'.encode(),  # a lone surrogate
        f"{{{f}: [], {f}: []}}".encode(),  # duplicate keys
        f'{{{f}: {{"x": 1, "x": 2}}}}'.encode(),
        f'{{{f}: "x"}}'.encode(),
        f'{{{f}: [1, "x", null, {{}}]}}'.encode(),
        f'{{{f}: {{"parts": 7}}}}'.encode(),
        f'{{{f}: [[{{"parts": [{{"text": []}}]}}]]}}'.encode(),
        f'{{{f}: true, "unknownField": {{}}}}'.encode(),
        b"[]",
        b'"text"',
        b"12",
        b"null",
        b"{",
        b"{'a': 1e999, 'b': [[[[]]]]}",  # single quotes are taken (Google's curl samples), bad values are not
    ]


def send(conn: Connection, kind: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    if kind == "RESUMABLE":
        headers = {"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start"}
        return conn.request("POST", path, body, {**headers, "Content-Type": "application/json"})
    if kind == "MULTIPART":
        multipart = (
            b"--xyz\r\nContent-Type: application/json\r\n\r\n"
            + body
            + b"\r\n--xyz\r\nContent-Type: text/plain\r\n\r\nbytes\r\n--xyz--\r\n"
        )
        headers = {"X-Goog-Upload-Protocol": "multipart", "Content-Type": "multipart/related; boundary=xyz"}
        return conn.request("POST", path, multipart, headers)
    return conn.request(kind, path, body, {"Content-Type": "application/json"})


@pytest.mark.parametrize(("kind", "path", "field"), ROUTES, ids=[f"{k} {p}" for k, p, _ in ROUTES])
def test_hostile_bodies_are_4xx_on_every_route(conn: Connection, kind: str, path: str, field: str) -> None:
    for body in hostile_bodies(field):
        status, _, data = send(conn, kind, path, body)
        assert 400 <= status < 500, (body[:80], status, data[:300])
        google_error(status, data)
    assert_still_serves(conn)


def test_hostile_file_search_and_corpus_values_are_4xx(conn: Connection) -> None:
    """Bodies that parse, against resources that exist: every bad value is a 4xx, never a 500."""
    status, _, data = conn.request("POST", "/v1beta/fileSearchStores", b'{"displayName": "s"}')
    store = json.loads(data)["name"]
    status, _, data = conn.request("POST", "/v1beta/corpora", b'{"displayName": "c"}')
    corpus = json.loads(data)["name"]
    status, _, data = conn.request("POST", f"/v1beta/{corpus}/documents", b"{}")
    document = json.loads(data)["name"]
    tool = {"fileSearchStoreNames": [store]}
    cases = [
        ("POST", f"/upload/v1beta/{store}:uploadToFileSearchStore?uploadType=multipart", None),
        ("POST", f"/v1beta/{store}:importFile", {"fileName": "files/nope"}),
        ("POST", f"/v1beta/{store}:importFile", {"fileName": "../../etc"}),
        (
            "POST",
            f"/v1beta/{store}:importFile",
            {"fileName": "files/x", "chunkingConfig": {"whiteSpaceConfig": {"maxTokensPerChunk": 100000}}},
        ),
        ("GET", f"/v1beta/{store}/documents/%2e%2e", None),
        ("GET", f"/v1beta/{store}/documents?pageSize=-1", None),
        ("GET", f"/v1beta/{store}/operations/nothing", None),
        ("GET", f"/v1beta/{store}/upload/operations/nothing", None),
        ("DELETE", "/v1beta/fileSearchStores/UPPER", None),
        ("GET", "/v1beta/fileSearchStores?pageToken=garbage", None),
        ("POST", "/v1beta/models/gemini-2.5-flash:generateContent", {**GOOD, "tools": [{"fileSearch": {}}]}),
        (
            "POST",
            "/v1beta/models/gemini-2.5-flash:generateContent",
            {**GOOD, "tools": [{"fileSearch": {**tool, "topK": 0}}]},
        ),
        (
            "POST",
            "/v1beta/models/gemini-2.5-flash:generateContent",
            {**GOOD, "tools": [{"fileSearch": {**tool, "metadataFilter": "a = = b"}}]},
        ),
        (
            "POST",
            "/v1beta/models/gemini-2.5-flash:generateContent",
            {**GOOD, "tools": [{"fileSearch": {"fileSearchStoreNames": ["fileSearchStores/UPPER/x"]}}]},
        ),
        (
            "POST",
            "/v1beta/models/gemini-2.5-flash:generateContent",
            {**GOOD, "tools": [{"fileSearch": {"fileSearchStoreNames": ["fileSearchStores/missing"]}}]},
        ),
        ("POST", f"/v1beta/{corpus}:query", {}),
        ("POST", f"/v1beta/{corpus}:query", {"query": "x", "resultsCount": 1000}),
        (
            "POST",
            f"/v1beta/{corpus}:query",
            {
                "query": "x",
                "metadataFilters": [{"key": "a.b.c", "conditions": [{"operation": "LESS", "stringValue": "x"}]}],
            },
        ),
        ("POST", f"/v1beta/{document}/chunks", {"data": {}}),
        ("POST", f"/v1beta/{document}/chunks", {"data": {"stringValue": "x"}, "customMetadata": [{"key": "k"}]}),
        (
            "POST",
            f"/v1beta/{document}/chunks:batchCreate",
            {"requests": [{"parent": "corpora/other/documents/d", "chunk": {"data": {"stringValue": "x"}}}]},
        ),
        ("POST", f"/v1beta/{document}/chunks:batchDelete", {"requests": [{"name": f"{document}/chunks/none"}]}),
        ("POST", f"/v1beta/{document}/chunks:batchUpdate", {"requests": [{"chunk": {"name": "x"}}]}),
        ("PATCH", f"/v1beta/{corpus}?updateMask=name", {"name": "corpora/y"}),
        ("POST", f"/v1beta/{corpus}/permissions", {"role": "GOD"}),
        ("POST", f"/v1beta/{corpus}/permissions", {"role": "READER", "granteeType": "USER"}),
        ("GET", f"/v1beta/{corpus}/permissions/none", None),
        ("POST", "/v1beta/corpora", {"name": "corpora/Not_Valid"}),
    ]
    for method, path, body in cases:
        raw = json.dumps(body).encode() if body is not None else None
        status, _, data = conn.request(method, path, raw, {"Content-Type": "application/json"})
        assert 400 <= status < 500, (method, path, status, data[:300])
        google_error(status, data)
    assert_still_serves(conn)


def test_hostile_tuning_values_are_4xx(conn: Connection) -> None:
    """Bodies that parse, with values no tuning request may have: every one a 4xx, never a 500."""
    examples = [{"textInput": f"q{i}", "output": f"a{i}"} for i in range(10)]
    good = {
        "baseModel": "models/smollm2-135m-instruct",
        "tuningTask": {"trainingData": {"examples": {"examples": examples}}},
    }
    cases = [
        ("POST", "/v1beta/tunedModels", {**good, "baseModel": ""}),
        ("POST", "/v1beta/tunedModels", {**good, "baseModel": "models/../../etc"}),
        ("POST", "/v1beta/tunedModels", {**good, "tunedModelSource": {"tunedModel": "tunedModels/x"}}),
        (
            "POST",
            "/v1beta/tunedModels",
            {**good, "tuningTask": {"trainingData": {"examples": {"examples": [{}] * 10}}}},
        ),
        ("POST", "/v1beta/tunedModels", {**good, "tuningTask": {"trainingData": {"examples": {"examples": [1, 2]}}}}),
        ("POST", "/v1beta/tunedModels", {**good, "tuningTask": {"hyperparameters": {"epochCount": 10**12}}}),
        ("POST", "/v1beta/tunedModels", {**good, "tuningTask": {"hyperparameters": {"learningRate": "fast"}}}),
        ("POST", "/v1beta/tunedModels", {**good, "tuningTask": {"hyperparameters": {"learningRateMultiplier": 0}}}),
        ("POST", "/v1beta/tunedModels", {**good, "topK": -1}),
        ("POST", "/v1beta/tunedModels", {**good, "topP": 2}),
        ("POST", "/v1beta/tunedModels?tunedModelId=-x", good),
        ("POST", "/v1beta/tunedModels?tunedModelId=" + "a" * 41, good),
        ("GET", "/v1beta/tunedModels?pageSize=-1", None),
        ("GET", "/v1beta/tunedModels?pageToken=garbage", None),
        ("GET", "/v1beta/tunedModels?filter=owner:you", None),
        ("GET", "/v1beta/tunedModels/%2e%2e", None),
        ("GET", "/v1beta/tunedModels/UPPER/operations/x", None),
        ("POST", "/v1beta/tunedModels/missing/operations/x:cancel", None),
        ("PATCH", "/v1beta/tunedModels/missing?updateMask=state", {"state": "ACTIVE"}),
        ("POST", "/v1beta/tunedModels/missing:generateContent", GOOD),
        ("POST", "/v1beta/tunedModels/missing:generateText", {"prompt": {"text": "hi"}}),
        ("POST", "/v1beta/models/gemini-2.5-flash:generateText", {"prompt": {}}),
        ("POST", "/v1beta/models/gemini-2.5-flash:generateText", {"prompt": {"text": "hi"}, "temperature": 9}),
        ("POST", "/v1beta/tunedModels/missing/permissions", {"role": "GOD"}),
    ]
    for method, path, body in cases:
        status, _, data = conn.request(method, path, json.dumps(body).encode() if body is not None else b"")
        assert 400 <= status < 500, (method, path, status, data[:300])
        google_error(status, data)
    assert_still_serves(conn)


def test_hostile_code_execution_and_thinking_values_are_4xx(conn: Connection) -> None:
    """Bodies that parse, with values no code execution or thinking request may have: every one a 4xx."""
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    code = {"tools": [{"codeExecution": {}}]}
    history = [{"role": "user", "parts": [{"text": "hi"}]}]
    cases = [
        {**GOOD, **code, "generationConfig": {"candidateCount": 3}},
        {**GOOD, **code, "generationConfig": {"responseMimeType": "application/json"}},
        {**GOOD, "tools": [{"codeExecution": {"x": 1}}]},
        {**GOOD, "tools": [{"codeExecution": []}]},
        {"contents": [*history, {"role": "model", "parts": [{"executableCode": {"language": "COBOL"}}]}]},
        {"contents": [*history, {"role": "model", "parts": [{"codeExecutionResult": {"outcome": "MAYBE"}}]}]},
        {"contents": [*history, {"role": "model", "parts": [{"executableCode": {}, "text": "x"}]}]},
        {"contents": [{"parts": [{"inlineData": {"mimeType": "text/csv", "data": "%%%"}}]}], **code},
        {"contents": [{"parts": [{"fileData": {"fileUri": "files/missing"}}]}], **code},
        {**GOOD, "generationConfig": {"thinkingConfig": {"thinkingBudget": -2}}},
        {**GOOD, "generationConfig": {"thinkingConfig": {"thinkingBudget": 2**31}}},
        {**GOOD, "generationConfig": {"thinkingConfig": {"thinkingBudget": "lots"}}},
        {**GOOD, "generationConfig": {"thinkingConfig": {"thinkingLevel": "EXTREME"}}},
        {**GOOD, "generationConfig": {"thinkingConfig": {"thinkingLevel": "LOW", "thinkingBudget": 5}}},
        {**GOOD, "generationConfig": {"thinkingConfig": {"thinkingBudget": 4}, "candidateCount": 2}},
        {"contents": [{"parts": [{"text": "x", "thoughtSignature": "not base64!"}]}]},
    ]
    for body in cases:
        status, _, data = conn.request("POST", path, json.dumps(body).encode())
        assert 400 <= status < 500, (body, status, data[:300])
        google_error(status, data)
    status, _, data = conn.request("POST", path, json.dumps({**GOOD, **code}).encode())
    assert status == 200, data[:300]  # the fake engine writes no code block: an answer without code
    assert_still_serves(conn)

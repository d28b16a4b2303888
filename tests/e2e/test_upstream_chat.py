"""engine = "openai" on a generic OpenAI-compatible server (Ollama, LocalAI, a hosted API): localgem sends the
conversation to its ``/v1/chat/completions``, JSON schemas as ``response_format`` and function declarations
through its tools API. The server here is a real llama-server (``--jinja``, a chat template that formats
tools) that localgem is told to treat as generic (``upstream_kind``), driven through the google-genai SDK.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import API_KEY
from tests.e2e.test_upstream_engine import (
    UPSTREAM,
    WEATHER,
    Upstream,
    start_llama_server,
    start_localgem,
    writes_json_valid_against_the_schema,
)
from tests.server import RunningServer
from tests.tool_templates import HERMES_TEMPLATE


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    folder = tmp_path_factory.mktemp("llama-server-chat")
    template = folder / "hermes.jinja"
    template.write_text(HERMES_TEMPLATE)
    server = start_llama_server(folder / "log.txt", extra=("--jinja", "--chat-template-file", str(template)))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_localgem(tmp_path_factory.mktemp("data"), upstream.url, model={"upstream_kind": "generic"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sdk(gateway: RunningServer) -> genai.Client:
    return genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=gateway.url))


def chat(upstream: Upstream, messages: list[dict], **fields) -> dict:
    """The server's own chat API, called directly: what localgem's answer is compared with."""
    # cache_prompt off: greedy output here may change with what the server's prompt cache holds.
    body = {"messages": messages, "temperature": 0, "max_tokens": 24, "cache_prompt": False, **fields}
    response = httpx.post(f"{upstream.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_generates_through_the_servers_chat_api(sdk: genai.Client, upstream: Upstream, gateway: RunningServer) -> None:
    system, question = "You are a travel guide.", "Name one sight in Paris."
    config = types.GenerateContentConfig(system_instruction=system, temperature=0, max_output_tokens=24)
    response = sdk.models.generate_content(model=UPSTREAM, contents=question, config=config)
    direct = chat(upstream, [{"role": "system", "content": system}, {"role": "user", "content": question}])
    contents = [{"role": "user", "parts": [{"text": question}]}]
    assert response.text == direct["choices"][0]["message"]["content"]
    assert response.usage_metadata.prompt_token_count == direct["usage"]["prompt_tokens"]
    assert response.usage_metadata.candidates_token_count == direct["usage"]["completion_tokens"]
    # localgem renders the same template (the server's /props) for countTokens: the same count.
    assert counted(gateway, contents, system) == direct["usage"]["prompt_tokens"]


def counted(gateway: RunningServer, contents: list[dict], system: str | None = None, tools: bool = False) -> int:
    """countTokens of a whole request (the SDK sends no system instruction to countTokens)."""
    inner: dict = {"model": f"models/{UPSTREAM}", "contents": contents}
    if tools:
        inner["tools"] = [{"functionDeclarations": [WEATHER.model_dump(mode="json", exclude_none=True)]}]
    if system:
        inner["systemInstruction"] = {"parts": [{"text": system}]}
    response = httpx.post(
        f"{gateway.url}/v1beta/models/{UPSTREAM}:countTokens",
        json={"generateContentRequest": inner},
        headers={"x-goog-api-key": API_KEY},
    )
    assert response.status_code == 200, response.text
    return response.json()["totalTokens"]


def test_stream_relays_chunks(sdk: genai.Client, upstream: Upstream) -> None:
    question = "Write a poem about the sea."
    config = types.GenerateContentConfig(temperature=0, max_output_tokens=20)
    chunks = list(sdk.models.generate_content_stream(model=UPSTREAM, contents=question, config=config))
    direct = chat(upstream, [{"role": "user", "content": question}], max_tokens=20)
    assert len([chunk for chunk in chunks if chunk.text]) >= 3, chunks  # as the server wrote it, not at the end
    assert "".join(chunk.text or "" for chunk in chunks) == direct["choices"][0]["message"]["content"]
    ending = {"length": types.FinishReason.MAX_TOKENS, "stop": types.FinishReason.STOP}
    assert chunks[-1].candidates[0].finish_reason == ending[direct["choices"][0]["finish_reason"]]
    assert chunks[-1].usage_metadata.candidates_token_count == direct["usage"]["completion_tokens"]


def test_json_schema_output(sdk: genai.Client) -> None:
    writes_json_valid_against_the_schema(sdk)


def test_an_enum_is_refused_not_ignored(sdk: genai.Client) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="text/x.enum", response_schema={"type": "STRING", "enum": ["red", "green"]}
    )
    with pytest.raises(genai_errors.ClientError) as raised:
        sdk.models.generate_content(model=UPSTREAM, contents="What colour is grass?", config=config)
    assert raised.value.code == 400


def tools_config(mode: str) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode=mode)),
        temperature=0,
        max_output_tokens=60,
    )


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": WEATHER.name,
            "description": WEATHER.description,
            "parameters": WEATHER.parameters_json_schema,
        },
    }
]


def test_function_calls_go_through_the_tools_api_and_are_checked(sdk: genai.Client, upstream: Upstream) -> None:
    question = "What is the weather in Oslo?"
    response = sdk.models.generate_content(model=UPSTREAM, contents=question, config=tools_config("ANY"))
    one = {"type": "function", "function": {"name": "get_weather"}}
    direct = chat(upstream, [{"role": "user", "content": question}], tools=TOOLS, tool_choice=one, max_tokens=60)
    # The server rendered the declarations into its prompt: localgem sent them through its tools API.
    assert response.usage_metadata.prompt_token_count == direct["usage"]["prompt_tokens"]
    assert (
        direct["usage"]["prompt_tokens"]
        > chat(upstream, [{"role": "user", "content": question}])["usage"]["prompt_tokens"] + 50
    )
    candidate = response.candidates[0]
    calls = direct["choices"][0]["message"].get("tool_calls")
    if calls:  # the server made the call: it is the answer
        assert [(c.name, c.args) for c in response.function_calls] == [
            (c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls
        ]
    else:  # mode ANY, and the server wrote text instead (its tools API did not enforce the call): not a success
        assert candidate.finish_reason == types.FinishReason.MALFORMED_FUNCTION_CALL
        assert not response.function_calls


def test_a_conversation_with_calls_and_results(sdk: genai.Client, upstream: Upstream, gateway: RunningServer) -> None:
    contents = [
        types.Content(role="user", parts=[types.Part.from_text(text="What is the weather in Oslo?")]),
        types.Content(role="model", parts=[types.Part.from_function_call(name="get_weather", args={"city": "Oslo"})]),
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="get_weather", response={"sky": "snow", "celsius": -3})],
        ),
    ]
    response = sdk.models.generate_content(model=UPSTREAM, contents=contents, config=tools_config("AUTO"))
    messages = [
        {"role": "user", "content": "What is the weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"sky": "snow", "celsius": -3}'},
    ]
    direct = chat(upstream, messages, tools=TOOLS, tool_choice="auto", max_tokens=60)
    assert response.usage_metadata.prompt_token_count == direct["usage"]["prompt_tokens"]
    assert response.text == direct["choices"][0]["message"]["content"]
    wire = [c.model_dump(mode="json", exclude_none=True) for c in contents]
    assert counted(gateway, wire, tools=True) == direct["usage"]["prompt_tokens"]

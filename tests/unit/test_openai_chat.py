"""A generic OpenAI-compatible server's chat API, as localgem maps it: the tool calls it streams become
functionCall parts, and calls that break the declarations end MALFORMED_FUNCTION_CALL. The server is a small
scripted one (a real llama-server is in ``tests/e2e/test_upstream_chat.py``, but it writes no tool call with
SmolLM2: this is where the call path itself is pinned down)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from localgem.app import create_app
from localgem.settings import load_settings
from tests.conftest import API_KEY
from tests.server import RunningServer, start_server

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="The weather in a city.",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def scripted_server() -> FastAPI:
    """Answers each chat request with ``app.state.script`` (the deltas of one choice), then usage; or with
    ``app.state.refusal`` (status, message) where it is set; a ``None`` in the script is an error event."""
    app = FastAPI()
    app.state.requests = []
    app.state.script = []
    app.state.refusal = None

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": "scripted", "object": "model", "owned_by": "someone"}]}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict:
        body = await request.json()
        return {"tokens": list(range(len((body.get("content") or body["prompt"]).split())))}

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Response:
        app.state.requests.append(await request.json())
        if app.state.refusal is not None:
            status, message = app.state.refusal
            return JSONResponse({"error": {"code": status, "message": message}}, status_code=status)

        def events() -> Iterator[str]:
            for step in app.state.script:
                if step is None:
                    yield f"data: {json.dumps({'error': {'message': 'the slot crashed'}})}\n\n"
                    return
                delta, finish = step
                chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            usage = {"prompt_tokens": 42, "completion_tokens": 9, "total_tokens": 51}
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningServer]:
    server = start_server(scripted_server())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sdk(upstream: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[genai.Client]:
    models = [{"id": "chat-up", "engine": "openai", "base_url": f"{upstream.url}/v1", "context_length": 2048}]
    settings = load_settings(
        environ={}, data_dir=tmp_path_factory.mktemp("data"), api_keys=[API_KEY], models=models, default_model="chat-up"
    )
    server = start_server(create_app(settings))
    yield genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
    server.stop()


def call_pieces(name: str, arguments: str, call_id: str = "call_a") -> list[tuple[dict, str | None]]:
    """One call streamed as servers do: the name first, the arguments in pieces."""
    cut = len(arguments) // 2
    return [
        (
            {
                "tool_calls": [
                    {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": arguments[:cut]}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": arguments[cut:]}}]}, "tool_calls"),
    ]


def config(mode: str) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode=mode)),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )


def test_streamed_tool_calls_become_function_calls(sdk: genai.Client, upstream: RunningServer) -> None:
    upstream.app.state.script = [({"role": "assistant", "content": "Let me check."}, None)] + call_pieces(
        "get_weather", '{"city": "Oslo"}'
    )
    response = sdk.models.generate_content(model="chat-up", contents="Weather in Oslo?", config=config("AUTO"))
    assert [(c.name, c.args) for c in response.function_calls] == [("get_weather", {"city": "Oslo"})]
    assert response.candidates[0].content.parts[0].text == "Let me check."
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.prompt_token_count == 42  # the server's count of the prompt it rendered
    sent = upstream.app.state.requests[-1]
    assert sent["tool_choice"] == "auto" and sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["messages"] == [{"role": "user", "content": "Weather in Oslo?"}]
    # Streamed: the call comes whole, in the last chunk.
    chunks = list(sdk.models.generate_content_stream(model="chat-up", contents="Weather?", config=config("AUTO")))
    assert [c.name for c in chunks[-1].function_calls] == ["get_weather"]
    assert all(not chunk.function_calls for chunk in chunks[:-1])


def test_mode_any_names_the_function_and_history_keeps_call_ids(sdk: genai.Client, upstream: RunningServer) -> None:
    upstream.app.state.script = call_pieces("get_weather", '{"city": "Rome"}')
    contents = [
        types.Content(role="user", parts=[types.Part.from_text(text="Weather in Oslo, then Rome?")]),
        types.Content(role="model", parts=[types.Part.from_function_call(name="get_weather", args={"city": "Oslo"})]),
        types.Content(
            role="user", parts=[types.Part.from_function_response(name="get_weather", response={"celsius": -3})]
        ),
    ]
    response = sdk.models.generate_content(model="chat-up", contents=contents, config=config("ANY"))
    assert [(c.name, c.args) for c in response.function_calls] == [("get_weather", {"city": "Rome"})]
    sent = upstream.app.state.requests[-1]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assistant, result = sent["messages"][1:]
    (call,) = assistant["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    assert result == {"role": "tool", "content": '{"celsius": -3}', "tool_call_id": call["id"], "name": "get_weather"}


@pytest.mark.parametrize(
    ("script", "mode"),
    [
        (call_pieces("get_time", "{}"), "AUTO"),  # a function nobody declared
        (call_pieces("get_weather", '{"city": 7}'), "AUTO"),  # arguments against the schema
        (call_pieces("get_weather", '{"city": "Os'), "AUTO"),  # arguments that are not JSON
        ([({"content": "It is sunny."}, "stop")], "ANY"),  # mode ANY, and no call (the API did not enforce it)
    ],
)
def test_calls_the_server_got_wrong_are_malformed(
    sdk: genai.Client, upstream: RunningServer, script: list, mode: str
) -> None:
    upstream.app.state.script = script
    response = sdk.models.generate_content(model="chat-up", contents="Weather in Oslo?", config=config(mode))
    assert response.candidates[0].finish_reason == types.FinishReason.MALFORMED_FUNCTION_CALL
    assert not response.function_calls


def test_features_that_extend_the_prompt_are_refused(sdk: genai.Client, upstream: RunningServer) -> None:
    upstream.app.state.script = [({"content": "Hi."}, "stop")]
    thinking = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=64))
    with pytest.raises(genai.errors.ClientError) as raised:
        sdk.models.generate_content(model="chat-up", contents="Hello", config=thinking)
    assert raised.value.code == 400 and "renders the prompt itself" in raised.value.message


@pytest.mark.parametrize(
    ("status", "code", "says"),
    [
        (429, "RESOURCE_EXHAUSTED", "at capacity: all slots busy"),
        (503, "UNAVAILABLE", "unavailable: loading model"),
        (400, "INVALID_ARGUMENT", "refused the request: bad grammar"),
        (500, "INTERNAL", "failed (500): boom"),
    ],
)
def test_the_servers_refusals_become_googles(
    sdk: genai.Client, upstream: RunningServer, status: int, code: str, says: str
) -> None:
    upstream.app.state.refusal = (status, says.rsplit(": ", 1)[1])
    try:
        with pytest.raises(genai_errors.APIError) as raised:
            sdk.models.generate_content(model="chat-up", contents="Hi")
        assert raised.value.code == status and raised.value.status == code
        assert says in raised.value.message
        upstream.app.state.script = [({"content": "Hi."}, "stop")]
        upstream.app.state.refusal = None
        assert sdk.models.generate_content(model="chat-up", contents="Hi").text == "Hi."  # and the next one works
    finally:
        upstream.app.state.refusal = None


def test_an_error_mid_stream_ends_the_stream_with_an_error(sdk: genai.Client, upstream: RunningServer) -> None:
    upstream.app.state.script = [({"content": "Once"}, None), ({"content": " upon"}, None), None]
    texts = []
    with pytest.raises(genai_errors.APIError) as raised:
        for chunk in sdk.models.generate_content_stream(model="chat-up", contents="Tell a story"):
            texts.append(chunk.text)
    assert texts == ["Once", " upon"]
    assert raised.value.code == 500 and "failed mid-stream: the slot crashed" in raised.value.message

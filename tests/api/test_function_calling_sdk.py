"""Function calling through google-genai on the real model: calls constrained to the declarations."""

from __future__ import annotations

import httpx
import jsonschema
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import API_KEY
from tests.server import RunningServer

MODEL = "gemini-2.5-flash"
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="The current weather in a city.",
    parameters=types.Schema(
        type="OBJECT",
        properties={
            "city": types.Schema(type="STRING"),
            "unit": types.Schema(type="STRING", enum=["celsius", "fahrenheit"]),
        },
        required=["city", "unit"],
    ),
)
ADD = types.FunctionDeclaration(
    name="add",
    description="Add two whole numbers.",
    parameters_json_schema={
        "type": "object",
        "properties": {"a": {"type": "integer", "minimum": -1000, "maximum": 1000}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)
ARGUMENTS = {
    "get_weather": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    "add": {**ADD.parameters_json_schema, "additionalProperties": False},
}
PROMPTS = ["What's the weather in Paris?", "Add 2 and 40.", "Is it cold in Oslo?", "What is 7 plus 8?", "Hello!"]


def config(mode: str, allowed: list[str] | None = None, **extra) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER, ADD])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(mode=mode, allowed_function_names=allowed)
        ),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        **extra,
    )


@pytest.mark.parametrize(("seed", "prompt"), list(enumerate(PROMPTS)))
def test_any_mode_always_returns_valid_calls(client: genai.Client, seed: int, prompt: str) -> None:
    response = client.models.generate_content(
        model=MODEL, contents=prompt, config=config("ANY", temperature=0.9, seed=seed, max_output_tokens=400)
    )
    candidate = response.candidates[0]
    assert candidate.finish_reason == types.FinishReason.STOP
    calls = [part.function_call for part in candidate.content.parts if part.function_call]
    assert calls and len(calls) == len(candidate.content.parts)
    for call in calls:
        jsonschema.validate(call.args, ARGUMENTS[call.name])
        assert call.id.startswith("call_")
    assert len({call.id for call in calls}) == len(calls)
    assert response.function_calls == calls


def test_allowed_function_names_are_honoured(client: genai.Client) -> None:
    for seed, prompt in enumerate(PROMPTS[:3]):
        response = client.models.generate_content(
            model=MODEL, contents=prompt, config=config("ANY", ["add"], temperature=0.9, seed=seed)
        )
        assert {call.name for call in response.function_calls} == {"add"}


def test_a_streamed_call_arrives_whole_in_one_chunk(client: genai.Client) -> None:
    chunks = list(
        client.models.generate_content_stream(model=MODEL, contents="Add 2 and 3.", config=config("ANY", ["add"]))
    )
    with_calls = [chunk for chunk in chunks if chunk.function_calls]
    assert len(with_calls) == 1 and with_calls[0] is chunks[-1]
    assert all("<tool_call>" not in (part.text or "") for c in chunks for part in c.candidates[0].content.parts)
    unary = client.models.generate_content(model=MODEL, contents="Add 2 and 3.", config=config("ANY", ["add"]))
    assert [(c.name, c.args) for c in with_calls[0].function_calls] == [(c.name, c.args) for c in unary.function_calls]


def test_a_cut_off_call_is_malformed(client: genai.Client) -> None:
    response = client.models.generate_content(
        model=MODEL, contents="Weather in Rome?", config=config("ANY", max_output_tokens=6)
    )
    assert response.candidates[0].finish_reason == types.FinishReason.MALFORMED_FUNCTION_CALL
    assert not response.function_calls


def test_automatic_function_calling_round_trip(client: genai.Client) -> None:
    ran: list[tuple[str, str]] = []

    def get_weather(city: str, unit: str) -> dict:
        """The current weather in a city.

        Args:
            city: the city's name
            unit: celsius or fahrenheit
        """
        ran.append((city, unit))
        return {"temperature": 21, "unit": unit}

    response = client.models.generate_content(
        model=MODEL,
        # (A question SmolLM2 ends its forced calls on with flash attention, q8_0 or f16 K, and plain attention: asked
        # "What is the weather like in Paris today?", with q8_0 K it repeats that call until the loop stop ends it,
        # finishReason OTHER, as it did for "What's the weather in Paris?" with f16 K; with f16 K and V, asked "Is it
        # cold in Oslo today?", its third call had unit "temperature". The SDK cannot call a function whose unit is a
        # Literal or an Enum, so the unit stays a str.)
        contents="Is it cold in Oslo today, in celsius?",
        config=types.GenerateContentConfig(
            tools=[get_weather],
            tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY")),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(maximum_remote_calls=2),
            temperature=0,
        ),
    )
    assert ran and all(isinstance(city, str) and unit in ("celsius", "fahrenheit") for city, unit in ran)
    history = response.automatic_function_calling_history
    responses = [part.function_response for content in history for part in content.parts if part.function_response]
    assert responses and responses[0].response == {"result": {"temperature": 21, "unit": ran[0][1]}}
    assert response.candidates[0].finish_reason == types.FinishReason.STOP


def test_function_responses_reach_the_model(client: genai.Client, real_server: RunningServer) -> None:
    call = types.FunctionCall(name="get_weather", args={"city": "Paris", "unit": "celsius"}, id="call_1")
    result = types.FunctionResponse(name="get_weather", response={"temperature": 21}, id="call_1")
    history = [
        types.Content(role="user", parts=[types.Part(text="What's the weather in Paris?")]),
        types.Content(role="model", parts=[types.Part(function_call=call)]),
        types.Content(role="user", parts=[types.Part(function_response=result)]),
    ]
    answer = client.models.generate_content(model=MODEL, contents=history, config=config("AUTO", temperature=0))
    assert answer.candidates[0].finish_reason == types.FinishReason.STOP
    assert answer.text or answer.function_calls
    # The rendered turns are in the prompt: counting with and without the function response differs by it.
    body = lambda contents: {  # noqa: E731
        "generateContentRequest": {
            "model": "models/gemini-2.5-flash",
            "contents": [c.model_dump(mode="json", exclude_none=True, by_alias=True) for c in contents],
        }
    }
    count = lambda contents: httpx.post(  # noqa: E731
        f"{real_server.url}/v1beta/models/{MODEL}:countTokens", params={"key": API_KEY}, json=body(contents)
    ).json()["totalTokens"]
    assert count(history) > count(history[:2]) + len('{"temperature": 21}') // 4


@pytest.mark.parametrize(
    ("tools", "tool_config", "needle"),
    [
        ([{"functionDeclarations": [{"name": "9lives"}]}], None, "Invalid function name"),
        ([{"functionDeclarations": [{"name": "f"}, {"name": "f"}]}], None, "Duplicate function declaration"),
        (
            [{"functionDeclarations": [{"name": "f"}]}],
            {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}},
            "ANY or VALIDATED",
        ),
        (
            [{"functionDeclarations": [{"name": "f"}]}],
            {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["g"]}},
            "undeclared",
        ),
        (
            [
                {
                    "functionDeclarations": [
                        {"name": "f", "parametersJsonSchema": {"type": "object", "patternProperties": {}}}
                    ]
                }
            ],
            None,
            "patternProperties",
        ),
        ([{"functionDeclarations": [{"name": "f", "parameters": {"type": "STRING"}}]}], None, "OBJECT"),
        ([{"googleSearch": {}}], None, "google_search"),
        (None, {"functionCallingConfig": {"mode": "ANY"}}, "needs tools"),
    ],
)
def test_bad_tool_requests_get_a_400(real_server: RunningServer, tools, tool_config, needle: str) -> None:
    body: dict = {"contents": [{"parts": [{"text": "hi"}]}]}
    if tools is not None:
        body["tools"] = tools
    if tool_config is not None:
        body["toolConfig"] = tool_config
    response = httpx.post(
        f"{real_server.url}/v1beta/models/{MODEL}:generateContent", params={"key": API_KEY}, json=body
    )
    assert response.status_code == 400 and needle in response.json()["error"]["message"], response.text


def test_tools_and_a_response_schema_together_are_refused(client: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as refused:
        client.models.generate_content(
            model=MODEL, contents="x", config=config("ANY", response_mime_type="application/json")
        )
    assert refused.value.code == 400 and "Function calling with a response schema" in refused.value.message


def test_auto_mode_constrains_calls_once_the_model_opts_in(client: genai.Client) -> None:
    """Free text is free; from ``<tool_call>`` on, the grammar holds (and a token running past the
    trigger, which would make llama.cpp abort, is never picked)."""
    prompts = ["Call get_weather for Paris using a <tool_call> block.", "Say: I will check. <tool_call>"]
    called = 0
    for prompt in prompts:
        for seed in range(3):
            response = client.models.generate_content(
                model=MODEL, contents=prompt, config=config("AUTO", temperature=0.7, seed=seed, max_output_tokens=200)
            )
            for call in response.function_calls or []:
                jsonschema.validate(call.args, ARGUMENTS[call.name])
                called += 1
            assert "<tool_call>" not in (response.text or "")
    assert called > 0


def test_validated_mode_and_counting_tools(real_server: RunningServer, client: genai.Client) -> None:
    response = client.models.generate_content(
        model=MODEL, contents="Add 1 and 2.", config=config("VALIDATED", ["add"], temperature=0, max_output_tokens=120)
    )
    assert response.candidates[0].finish_reason in (types.FinishReason.STOP, types.FinishReason.MAX_TOKENS)
    assert {call.name for call in response.function_calls or []} <= {"add"}
    request = {"contents": [{"parts": [{"text": "Add 1 and 2."}]}]}
    tools = [{"functionDeclarations": [ADD.model_dump(mode="json", exclude_none=True, by_alias=True)]}]

    def count(inner: dict) -> int:
        url = f"{real_server.url}/v1beta/models/{MODEL}:countTokens"
        return httpx.post(url, params={"key": API_KEY}, json={"generateContentRequest": inner}).json()["totalTokens"]

    assert count({**request, "tools": tools}) > count(request) + 20  # the declarations are in the prompt


def test_a_model_whose_template_formats_tools_gets_its_own_format(tmp_path) -> None:
    """A user's model with a Hermes/Qwen-style template: tools and turns go through that template,
    and the calls it is constrained to use its ``arguments`` key."""
    from localgem.app import create_app
    from localgem.models.packaged import smollm2_135m_instruct
    from localgem.settings import load_settings
    from tests.server import start_server
    from tests.tool_templates import HERMES_TEMPLATE

    settings = load_settings(
        environ={},
        data_dir=tmp_path,
        api_keys=[API_KEY],
        builtin_models=False,
        default_model="hermes-style",
        models=[{"id": "hermes-style", "path": str(smollm2_135m_instruct(tmp_path)), "chat_template": HERMES_TEMPLATE}],
    )
    server = start_server(create_app(settings))
    try:
        client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
        for seed, prompt in enumerate(PROMPTS[:3]):
            response = client.models.generate_content(
                model=MODEL, contents=prompt, config=config("ANY", temperature=0.9, seed=seed, max_output_tokens=300)
            )
            assert response.candidates[0].finish_reason == types.FinishReason.STOP
            assert response.function_calls
            for call in response.function_calls:
                jsonschema.validate(call.args, ARGUMENTS[call.name])
    finally:
        server.stop()

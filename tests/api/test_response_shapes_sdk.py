"""Response shapes Google's recordings show, on the real model and through google-genai: countTokens'
breakdown (contentTokens, systemInstructionsTokens) on the model's tokenizer, and finishMessage."""

from __future__ import annotations

import asyncio
import json

import httpx
from google import genai
from google.genai import types

from tests.conftest import API_KEY, engine_of
from tests.server import RunningServer

MODEL = "gemini-2.5-flash"
FOX = "The quick brown fox jumps over the lazy dog."


def _count(server: RunningServer, body: dict) -> dict:
    response = httpx.post(
        f"{server.url}/v1beta/models/{MODEL}:countTokens", json=body, headers={"x-goog-api-key": API_KEY}, timeout=60
    )
    assert response.status_code == 200, response.text
    data = response.json()
    system = data["systemInstructionsTokens"]
    added = sum(sum(c["partTokens"]) + c["roleTokens"] for c in data["contentTokens"])
    assert added + sum(system.get("partTokens", [])) + system.get("roleTokens", 0) == data["totalTokens"]
    return data


def _tokens(server: RunningServer, text: str) -> int:
    return len(asyncio.run(engine_of(server).tokenize(text)))


def test_the_sdk_reads_the_count_with_its_breakdown(client: genai.Client, real_server: RunningServer) -> None:
    # google-genai 3.6 has no fields for contentTokens and systemInstructionsTokens (Google sends them
    # too): it reads totalTokens and leaves the rest, as it does with Google's responses.
    counted = client.models.count_tokens(model=MODEL, contents=FOX)
    data = _count(real_server, {"contents": [{"role": "user", "parts": [{"text": FOX}]}]})
    assert counted.total_tokens == data["totalTokens"]
    assert data["contentTokens"] == [
        {"partTokens": [_tokens(real_server, FOX)], "roleTokens": data["contentTokens"][0]["roleTokens"]}
    ]
    assert data["systemInstructionsTokens"] == {}
    assert data["promptTokensDetails"] == [{"modality": "TEXT", "tokenCount": data["totalTokens"]}]


def test_breakdown_of_a_conversation_with_a_system_instruction(
    client: genai.Client, real_server: RunningServer
) -> None:
    contents = [
        {"role": "user", "parts": [{"text": "Hello there. "}, {"text": "How are you?"}]},
        {"role": "model", "parts": [{"text": "Fine, thanks."}]},
        {"role": "user", "parts": [{"text": FOX}]},
    ]
    system = {"parts": [{"text": "Answer in one word."}]}
    data = _count(
        real_server,
        {"generateContentRequest": {"model": f"models/{MODEL}", "contents": contents, "systemInstruction": system}},
    )
    assert data["systemInstructionsTokens"]["partTokens"] == [_tokens(real_server, "Answer in one word.")]
    assert data["systemInstructionsTokens"]["roleTokens"] > 0  # the system turn's markers
    first, answer, last = data["contentTokens"]
    assert sum(first["partTokens"]) == _tokens(real_server, "Hello there. How are you?")
    assert answer["partTokens"] == [_tokens(real_server, "Fine, thanks.")]
    assert last["partTokens"] == [_tokens(real_server, FOX)]
    assert last["roleTokens"] > first["roleTokens"]  # the last one's include the prompt that opens the answer
    generated = client.models.generate_content(
        model=MODEL,
        contents=[types.Content.model_validate(c) for c in contents],
        config=types.GenerateContentConfig(system_instruction="Answer in one word.", max_output_tokens=1),
    )
    assert generated.usage_metadata.prompt_token_count == data["totalTokens"]


def test_a_candidate_ending_in_function_calls_has_googles_finish_message(
    client: genai.Client, real_server: RunningServer
) -> None:
    weather = types.FunctionDeclaration(
        name="get_weather",
        description="Weather of a city.",
        parameters=types.Schema(
            type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}, required=["city"]
        ),
    )
    config = types.GenerateContentConfig(
        temperature=0,
        max_output_tokens=400,  # SmolLM repeats its call up to the grammar's limit of blocks, then stops
        tools=[types.Tool(function_declarations=[weather])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY")),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    response = client.models.generate_content(model=MODEL, contents="What is the weather in Paris?", config=config)
    assert response.function_calls and response.function_calls[0].name == "get_weather"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    # google-genai reads finishMessage on Vertex only (as with Google's Gemini API): the raw body has it.
    raw = client.models.generate_content(
        model=MODEL,
        contents="What is the weather in Paris?",
        config=config.model_copy(update={"should_return_http_response": True}),
    )
    candidate = json.loads(raw.sdk_http_response.body)["candidates"][0]
    assert candidate["finishReason"] == "STOP" and candidate["finishMessage"] == "Model generated function call(s)."
    body = {
        "contents": [{"role": "user", "parts": [{"text": "What is the weather in Paris?"}]}],
        "tools": [{"functionDeclarations": [weather.model_dump(mode="json", exclude_none=True)]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {"temperature": 0, "maxOutputTokens": 400},
    }
    streamed = httpx.post(
        f"{real_server.url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
        json=body,
        headers={"x-goog-api-key": API_KEY},
        timeout=600,  # 248 tokens; slow on a busy machine
    )
    chunks = [json.loads(line[len("data: ") :]) for line in streamed.text.splitlines() if line.startswith("data: ")]
    last = chunks[-1]["candidates"][0]
    assert (
        last["finishMessage"] == "Model generated function call(s)." and "functionCall" in last["content"]["parts"][-1]
    )
    assert all("finishMessage" not in c["candidates"][0] for c in chunks[:-1])

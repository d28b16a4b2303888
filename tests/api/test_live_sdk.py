"""The Live API on the real model: google-genai's ``client.aio.live`` over wss:// (a self-signed
certificate), raw WebSocket clients for what the SDK cannot send, and a storm of vanishing clients."""

from __future__ import annotations

import asyncio
import json
import time

import jsonschema
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from localgem.engines.llama.native import ONE_PASS_CELLS
from tests.conftest import API_KEY, engine_of, trusting
from tests.live import open_session, read_turn, receive, send, turn_text, user_turn
from tests.server import RunningServer

LIVE_MODEL = "gemini-live-2.5-flash-preview"
QUESTIONS = ["What is the capital of France?", "And of Italy?", "And of Spain?"]


async def _turn(session, text: str, realtime: bool) -> tuple[str, types.UsageMetadata]:
    if realtime:
        await session.send_realtime_input(text=text)
    else:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text=text)]), turn_complete=True
        )
    chunks, usage = [], None
    async for message in session.receive():  # ends at turnComplete
        chunks.append(message.text or "")
        usage = message.usage_metadata or usage
    assert usage is not None
    return "".join(chunks), usage


def test_turns_reuse_the_kv_state_and_answer_as_rest_does(live_client: genai.Client, client: genai.Client):
    """Three turns (clientContent, realtimeInput text, clientContent): each turn starts from the cells of
    the turns before (cachedContentTokenCount), and says exactly what generateContent and
    streamGenerateContent say to the same conversation."""
    config = types.LiveConnectConfig(response_modalities=["TEXT"], max_output_tokens=16, temperature=0)
    history: list[types.Content] = []

    async def converse():
        results = []
        async with live_client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
            for n, question in enumerate(QUESTIONS):
                text, usage = await _turn(session, question, realtime=n == 1)
                history.append(types.Content(role="user", parts=[types.Part(text=question)]))
                history.append(types.Content(role="model", parts=[types.Part(text=text)]))
                results.append((text, usage))
        return results

    results = asyncio.run(converse())
    reused = 0
    for n, (text, usage) in enumerate(results):
        assert (
            text
            and usage.response_token_count
            and usage.total_token_count == (usage.prompt_token_count + usage.response_token_count)
        )
        if n:
            before = results[n - 1][1].prompt_token_count
            if before - 1 <= ONE_PASS_CELLS < usage.prompt_token_count - 1:
                # The previous prompt was short enough to be read in one pass, this one is not: its cells are
                # computed again (see ``prefix_reuse.reusable``).
                assert not usage.cached_content_token_count, (n, usage)
            else:
                # The previous turn's prompt is reused, to the chunk (16 tokens) its last full chunk ended on.
                assert usage.cached_content_token_count >= before - 20, (n, usage)
                reused += 1
    assert reused
    rest_config = types.GenerateContentConfig(max_output_tokens=16, temperature=0)
    rest = client.models.generate_content(model="gemini-2.5-flash", contents=history[:-1], config=rest_config)
    assert rest.text == results[-1][0]
    streamed = "".join(
        chunk.text or ""
        for chunk in client.models.generate_content_stream(
            model="gemini-2.5-flash", contents=history[:-1], config=rest_config
        )
    )
    assert streamed == results[-1][0]


@pytest.mark.filterwarnings("ignore:Setting `LiveConnectConfig.generation_config` is deprecated")
def test_structured_output_in_a_session(live_client: genai.Client):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    config = types.LiveConnectConfig(
        response_modalities=["TEXT"],
        temperature=0,
        generation_config=types.GenerationConfig(response_mime_type="application/json", response_json_schema=schema),
    )

    async def ask() -> str:
        async with live_client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
            return (await _turn(session, "Name a big city.", realtime=True))[0]

    jsonschema.validate(json.loads(asyncio.run(ask())), schema)


def test_resumption_with_the_sdk(live_client: genai.Client):
    config = types.LiveConnectConfig(
        response_modalities=["TEXT"],
        max_output_tokens=8,
        temperature=0,
        session_resumption=types.SessionResumptionConfig(),
    )

    async def first() -> tuple[str, int]:
        async with live_client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
            _, usage = await _turn(session, "My name is Ada Lovelace.", realtime=False)
            async for message in session.receive():
                if message.session_resumption_update:
                    update = message.session_resumption_update
                    assert update.resumable and update.new_handle
                    return update.new_handle, usage.prompt_token_count
        raise AssertionError("no resumption update")

    handle, first_prompt = asyncio.run(first())
    resumed = config.model_copy(update={"session_resumption": types.SessionResumptionConfig(handle=handle)})

    async def second() -> int:
        async with live_client.aio.live.connect(model=LIVE_MODEL, config=resumed) as session:
            _, usage = await _turn(session, "What is my name?", realtime=True)
            return usage.prompt_token_count

    fresh = config.model_copy(update={"session_resumption": None})

    async def alone() -> int:
        async with live_client.aio.live.connect(model=LIVE_MODEL, config=fresh) as session:
            return (await _turn(session, "What is my name?", realtime=True))[1].prompt_token_count

    # The resumed conversation holds the first one: its prompt is longer than the question alone by it.
    assert asyncio.run(second()) - asyncio.run(alone()) >= first_prompt - 20


def test_errors_reach_the_sdk_as_api_errors(real_tls_server: RunningServer, certificate):
    bad = genai.Client(
        api_key="not-a-key",
        http_options=types.HttpOptions(base_url=real_tls_server.url, async_client_args={"ssl": trusting(certificate)}),
    )

    async def connect(client: genai.Client, model: str) -> None:
        async with client.aio.live.connect(model=model, config={"response_modalities": ["TEXT"]}):
            pass

    with pytest.raises(genai_errors.APIError) as raised:
        asyncio.run(connect(bad, LIVE_MODEL))
    assert raised.value.code == 1007 and "API key not valid" in str(raised.value)


def test_function_calls_are_constrained_to_the_declarations(real_server: RunningServer):
    """Forced calls (toolConfig mode ANY, which localgem's Live setup also takes) come out of the same
    grammar as REST: arguments valid for the schema, an id, and the turn waits for toolResponse."""
    tool = {
        "functionDeclarations": [
            {
                "name": "get_weather",
                "description": "The current weather in a city.",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {"city": {"type": "STRING"}, "unit": {"type": "STRING", "enum": ["C", "F"]}},
                    "required": ["city", "unit"],
                },
            }
        ]
    }
    setup = {
        "tools": [tool],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {"temperature": 0, "maxOutputTokens": 48},
    }
    with open_session(real_server, API_KEY, setup) as ws:
        send(ws, user_turn("What's the weather in Paris?"))
        (call,) = read_turn(ws)[-1]["toolCall"]["functionCalls"]
        assert call["name"] == "get_weather" and call["id"]
        assert set(call["args"]) == {"city", "unit"} and call["args"]["unit"] in ("C", "F")
        response = {"id": call["id"], "name": "get_weather", "response": {"temperature": 21, "sky": "sunny"}}
        send(ws, {"toolResponse": {"functionResponses": [response]}})
        after = read_turn(ws)
        assert "toolCall" in after[-1] or after[-1]["serverContent"]["turnComplete"]


def test_a_storm_of_vanishing_clients_frees_every_sequence(real_server: RunningServer):
    engine = engine_of(real_server)
    sockets = []
    for n in range(12):
        ws = open_session(real_server, API_KEY, {"generationConfig": {"maxOutputTokens": 400}})
        send(ws, user_turn(f"Tell me a long story about the number {n}."))
        sockets.append(ws)
    for ws in sockets:
        assert "serverContent" in receive(ws)  # every session is generating
    for ws in sockets:
        ws.socket.close()  # gone without a close frame, as a client whose network drops
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and (engine.stats.active_sequences or real_server.app.state.live.open_sessions):
        time.sleep(0.02)
    assert engine.stats.active_sequences == 0 and real_server.app.state.live.open_sessions == 0
    with open_session(real_server, API_KEY, {"generationConfig": {"maxOutputTokens": 4}}) as ws:
        send(ws, user_turn("Hi"))
        assert turn_text(read_turn(ws))

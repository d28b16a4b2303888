"""The Live API's protocol over a real socket, on the deterministic fake engine: Google's recorded
sessions replayed, every kind of bad input, limits, interruption, tools, resumption, ephemeral tokens."""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from localgem.generation.tool_prompt import render_call
from tests.conftest import API_KEY, OTHER_KEY, start_fake_server, trusting
from tests.fakes import FakeEngine
from tests.live import (
    CONSTRAINED,
    MODEL,
    closed,
    connect,
    golden_exchange,
    kinds,
    live_url,
    open_session,
    read_turn,
    receive,
    send,
    turn_text,
    user_turn,
)
from tests.recordings import GOLDEN, available, key_paths
from tests.server import RunningServer, start_server

Start = Callable[..., RunningServer]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(delay=0.002)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def start(tmp_path: Path, engine: FakeEngine, clock: Clock) -> Iterator[Start]:
    """Start a server on the fake engine with some settings changed (same data dir each time)."""
    servers: list[RunningServer] = []

    def make(**overrides: Any) -> RunningServer:
        server = start_fake_server(tmp_path, engine, clock, **overrides)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(start: Start) -> RunningServer:
    return start()


def _healthy(server: RunningServer) -> None:
    """Nothing else on the server was affected: REST answers, and a new session works."""
    response = httpx.get(f"{server.url}/v1beta/models", headers={"x-goog-api-key": API_KEY})
    assert response.status_code == 200
    with open_session(server, API_KEY, {"generationConfig": {"maxOutputTokens": 2}}) as ws:
        send(ws, user_turn("Hi"))
        assert turn_text(read_turn(ws)) == "alpha beta"


# Google's recorded sessions ---------------------------------------------------------------------------

LIVE_RECORDINGS = sorted(p.name.removesuffix(".websocket.log") for p in GOLDEN.glob("live_*.websocket.log"))


def _audio(message: dict[str, Any]) -> bool:
    realtime = message.get("realtimeInput", {})
    return any(field in realtime for field in ("audio", "video", "mediaChunks"))


@pytest.mark.skipif(not available(), reason="the golden recordings are not next to this checkout")
@pytest.mark.parametrize("name", LIVE_RECORDINGS)
def test_google_recorded_sessions_replay_message_for_message(server: RunningServer, engine: FakeEngine, name: str):
    """Each client frame of the recording is sent as Google received it; what Google answered (its message
    kinds, in order, and the usageMetadata fields) must come back. Model text is extra: Google's sessions
    without responseModalities speak, and so do ours (Piper); the recorded audio is heard by Whisper; a
    function call comes from a scripted fake model."""
    frames = golden_exchange(name)
    engine.script = [render_call("get_current_weather", {"location": "Redmond, WA"})]
    assert frames[0][0] == ">" and "setup" in frames[0][1]
    with connect(live_url(server, f"key={API_KEY}"), open_timeout=30) as ws:
        at = 0
        while at < len(frames):
            direction, message = frames[at]
            if direction == ">":
                send(ws, message)
                at += 1
                continue
            expected = []
            while at < len(frames) and frames[at][0] == "<":
                expected.append(frames[at][1])
                at += 1
            # Which pieces carry text, audio and transcriptions differs with the model's words.
            audio_only = {
                "serverContent.modelTurn",
                "serverContent.outputTranscription",
                "serverContent.inputTranscription",
            }
            wanted = [kinds(m) - audio_only for m in expected]
            wanted = [w for w in wanted if w - {"serverContent"}]
            for google in wanted:
                while True:
                    ours = receive(ws, 30)
                    if kinds(ours) >= google:
                        break
                    assert kinds(ours) <= {"serverContent", "serverContent.modelTurn"}, (google, ours)
                usage = next((m["usageMetadata"] for m in expected if "usageMetadata" in m), None)
                if "usageMetadata" in google and usage is not None:
                    assert set(key_paths(usage)) <= set(key_paths(ours["usageMetadata"]))
        if frames[-1][0] == ">" and "toolResponse" in frames[-1][1]:
            # A response to no pending call joins the history; Google answers nothing, and neither do we.
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.5)


# Casing, bad input, auth ------------------------------------------------------------------------------


def test_snake_case_messages_from_python_with_mixed_nested_casing(server: RunningServer, engine: FakeEngine):
    with connect(live_url(server, f"key={API_KEY}")) as ws:
        send(
            ws,
            {
                "setup": {
                    "model": MODEL,
                    "generation_config": {"max_output_tokens": 3, "responseModalities": ["TEXT"]},
                    "realtimeInputConfig": {"automatic_activity_detection": {"disabled": False}},
                    "system_instruction": {"parts": [{"text": "Be brief."}]},
                }
            },
        )
        assert receive(ws) == {"setupComplete": {}}
        send(ws, {"client_content": {"turns": [{"role": "user", "parts": [{"text": "Hi"}]}], "turn_complete": True}})
        messages = read_turn(ws)
        assert turn_text(messages) == "alpha beta gamma"
        assert messages[-1]["usageMetadata"]["responseTokenCount"] == 3
        send(ws, {"realtime_input": {"text": "More"}})
        assert turn_text(read_turn(ws)) == "alpha beta gamma"
    assert engine.prompts[-1].startswith("System: Be brief.") or "Be brief." in engine.prompts[-1]
    assert "User: Hi\nModel: alpha beta gamma\nUser: More" in engine.prompts[-1]


SETUP = {"setup": {"model": MODEL}}


@pytest.mark.parametrize(
    ("frames", "code", "fragment"),
    [
        (["{not json"], 1007, "Invalid JSON"),
        ([{"setup": {"model": MODEL}, "clientContent": {}}], 1007, "exactly one"),
        ([{"clientContent": {"turnComplete": True}}], 1007, "first message"),
        ([SETUP, SETUP], 1007, "only once"),
        ([{"setup": {"model": "models/no-such-model"}}], 1008, "no-such-model"),
        ([{"setup": {}}], 1007, "setup.model"),
        ([{"bogus": {}}], 1007, "bogus"),
        ([{"setup": {"model": MODEL, "generationConfig": {"temperature": "hot"}}}], 1007, "temperature"),
        ([{"setup": {"model": MODEL, "generationConfig": {"responseModalities": ["IMAGE"]}}}], 1007, "IMAGE"),
        ([{"setup": {"model": MODEL, "generationConfig": {"responseModalities": ["TEXT", "AUDIO"]}}}], 1007, "one"),
        (
            [
                {
                    "setup": {
                        "model": MODEL,
                        "generationConfig": {
                            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Bob"}}}
                        },
                    }
                }
            ],
            1007,
            "Kore",
        ),
        ([{"setup": {"model": MODEL, "generationConfig": {"candidateCount": 2}}}], 1007, "one candidate"),
        ([SETUP, {"realtimeInput": {"audio": {"data": "AAE=", "mimeType": "audio/wav"}}}], 1007, "16-bit PCM"),
        ([SETUP, {"realtimeInput": {"audio": {"data": "AAE=", "mimeType": "audio/pcm;rate=4"}}}], 1007, "sample rate"),
        ([SETUP, {"realtimeInput": {"video": {"data": "AAE=", "mimeType": "image/jpeg"}}}], 1007, "vision"),
        ([SETUP, {"realtimeInput": {"mediaChunks": [{"data": "AAE=", "mimeType": "image/png"}]}}], 1007, "vision"),
        ([SETUP, {"realtimeInput": {"activityStart": {}}}], 1007, "automaticActivityDetection"),
        ([SETUP, {"toolResponse": {}}], 1007, "functionResponses"),
        ([SETUP, {"clientContent": {"turns": [{"role": "system", "parts": [{"text": "x"}]}]}}], 1007, "role"),
        ([SETUP, ["a list"]], 1007, "JSON object"),
        (
            [
                {
                    "setup": {
                        "model": MODEL,
                        "contextWindowCompression": {"triggerTokens": 10, "slidingWindow": {"targetTokens": 20}},
                    }
                }
            ],
            1007,
            "targetTokens",
        ),
    ],
)
def test_bad_input_closes_the_socket_with_googles_reason(server: RunningServer, frames, code, fragment):
    with connect(live_url(server, f"key={API_KEY}")) as ws:
        for frame in frames:
            ws.send(frame if isinstance(frame, str) else json.dumps(frame))
        got, reason, _ = closed(ws)
    assert (got, fragment.lower() in reason.lower()) == (code, True), (got, reason)
    _healthy(server)


@pytest.mark.parametrize(
    ("query", "headers", "path", "code", "fragment"),
    [
        ("", {}, None, 1008, "API Key"),
        ("key=wrong", {}, None, 1007, "API key not valid"),
        ("", {"x-goog-api-key": "wrong"}, None, 1007, "API key not valid"),
        (f"key={API_KEY}", {}, "v9.GenerativeService.BidiGenerateContent", 1008, "not found"),
        (f"key={API_KEY}", {}, "v1beta.GenerativeService.Nope", 1008, "not found"),
        ("access_token=auth_tokens/forged", {}, None, 1008, "token is not valid"),
    ],
)
def test_bad_credentials_close_with_a_reason(server: RunningServer, query, headers, path, code, fragment):
    url = live_url(server, query)
    if path is not None:
        url = f"{server.ws_url}/ws/google.ai.generativelanguage.{path}?{query}"
    if "auth_tokens" in query:
        url = live_url(server, query, version="v1alpha", method=CONSTRAINED)
    with connect(url, additional_headers=headers) as ws:
        ws.send(json.dumps(SETUP))
        got, reason, _ = closed(ws)
    assert got == code and fragment.lower() in reason.lower(), (got, reason)


def test_every_version_both_methods_header_key_and_the_js_double_slash(server: RunningServer):
    for version in ("v1beta", "v1", "v1alpha"):
        url = live_url(server, version=version).replace("/ws/", "//ws/")
        with connect(url, additional_headers={"x-goog-api-key": API_KEY}) as ws:
            setup = {"model": MODEL, "generationConfig": {"maxOutputTokens": 1, "responseModalities": ["TEXT"]}}
            ws.send(json.dumps({"setup": setup}))
            assert receive(ws) == {"setupComplete": {}}
            send(ws, user_turn("Hi"))
            assert turn_text(read_turn(ws)) == "alpha"


# Limits -----------------------------------------------------------------------------------------------


def test_message_size_limit(start: Start):
    server = start(live_max_message_bytes=2000)
    with open_session(server, API_KEY) as ws:
        send(ws, user_turn("x" * 3000))
        code, reason, _ = closed(ws)
    assert code == 1009 and "2000" in reason
    _healthy(server)


def test_sessions_per_project_are_limited(start: Start):
    server = start(live_max_sessions_per_project=2)
    first, second = open_session(server, API_KEY), open_session(server, API_KEY)
    with connect(live_url(server, f"key={API_KEY}")) as third:
        third.send(json.dumps(SETUP))
        code, reason, _ = closed(third)
    assert code == 1013 and "Too many concurrent Live sessions" in reason
    open_session(server, OTHER_KEY).close()  # another project has its own places
    first.close()
    deadline = time.monotonic() + 5
    while server.app.state.live.open_sessions > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    open_session(server, API_KEY).close()  # the place that freed is taken again
    second.close()


def test_idle_sessions_are_closed(start: Start):
    server = start(live_idle_timeout_seconds=0.5)
    with open_session(server, API_KEY) as ws:
        code, reason, _ = closed(ws)
    assert code == 1000 and "idle" in reason


def test_go_away_comes_before_the_longest_session_ends(start: Start):
    server = start(live_max_session_seconds=1.5, live_go_away_seconds=1.0)
    began = time.monotonic()
    with open_session(server, API_KEY) as ws:
        code, reason, messages = closed(ws)
    assert messages == [{"goAway": {"timeLeft": messages[0]["goAway"]["timeLeft"]}}]
    assert 0.5 < float(messages[0]["goAway"]["timeLeft"].removesuffix("s")) <= 1.0
    assert code == 1000 and "longest duration" in reason and time.monotonic() - began >= 1.4


def test_shutdown_sends_go_away_then_closes(start: Start):
    server = start(live_go_away_seconds=0.5)
    ws = open_session(server, API_KEY)
    server.stop()
    code, reason, messages = closed(ws)
    assert [list(m) for m in messages] == [["goAway"]]
    assert code == 1001 and "shutting down" in reason


def test_a_client_that_vanishes_mid_turn_stops_its_generation(server: RunningServer, engine: FakeEngine):
    engine.delay = 0.05
    ws = open_session(server, API_KEY, {"generationConfig": {"maxOutputTokens": 500}})
    send(ws, user_turn("Talk for long"))
    assert "modelTurn" in receive(ws)["serverContent"]
    ws.close()
    deadline = time.monotonic() + 1
    while engine.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.cancelled == 1
    assert server.app.state.live.open_sessions == 0


# Turns: interruption, activity, tools --------------------------------------------------------------------


def test_new_client_input_interrupts_the_model(server: RunningServer, engine: FakeEngine):
    engine.delay = 0.05
    with open_session(server, API_KEY, {"generationConfig": {"maxOutputTokens": 200}}) as ws:
        send(ws, user_turn("Talk for long"))
        first = receive(ws)["serverContent"]["modelTurn"]["parts"][0]["text"]
        engine.delay = 0.002
        send(ws, {"realtimeInput": {"text": "Stop. Something else."}})
        messages = []
        while not messages or not messages[-1].get("serverContent", {}).get("turnComplete"):
            messages.append(receive(ws))
        assert {"serverContent": {"interrupted": True}} in messages
    # The model's turn, as far as it got, stays in the conversation.
    assert f"Model: {first}" in engine.prompts[-1] and engine.prompts[-1].endswith(
        "User: Stop. Something else.\nModel:"
    )


def test_no_interruption_queues_the_input(server: RunningServer, engine: FakeEngine):
    engine.delay = 0.02
    setup = {"generationConfig": {"maxOutputTokens": 8}, "realtimeInputConfig": {"activityHandling": "NO_INTERRUPTION"}}
    with open_session(server, API_KEY, setup) as ws:
        send(ws, {"realtimeInput": {"text": "First"}})
        send(ws, {"realtimeInput": {"text": "Second"}})
        one, two = read_turn(ws), read_turn(ws)
    assert not any(m.get("serverContent", {}).get("interrupted") for m in one + two)
    assert turn_text(one) == turn_text(two) and len(engine.prompts) == 2
    assert engine.prompts[1].endswith("User: First\nModel: " + turn_text(one) + "\nUser: Second\nModel:")


def test_explicit_activity_makes_one_turn(server: RunningServer, engine: FakeEngine):
    setup = {
        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
        "generationConfig": {"maxOutputTokens": 2},
    }
    with open_session(server, API_KEY, setup) as ws:
        send(ws, {"realtimeInput": {"activityStart": {}}})
        send(ws, {"realtimeInput": {"text": "Hel"}})
        send(ws, {"realtimeInput": {"text": "lo"}})
        send(ws, {"realtimeInput": {"audioStreamEnd": True}})
        send(ws, {"realtimeInput": {"activityEnd": {}}})
        assert turn_text(read_turn(ws)) == "alpha beta"
    assert engine.prompts[-1].endswith("User: Hello\nModel:")


WEATHER_TOOL = {
    "functionDeclarations": [
        {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]},
        }
    ]
}


def test_function_calls_wait_for_the_tool_response(server: RunningServer, engine: FakeEngine):
    engine.script = [render_call("get_weather", {"city": "Paris"}), "It is sunny in Paris."]
    with open_session(server, API_KEY, {"tools": [WEATHER_TOOL]}) as ws:
        send(ws, user_turn("Weather in Paris?"))
        messages = read_turn(ws)
        (call,) = messages[-1]["toolCall"]["functionCalls"]
        assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"} and call["id"]
        with pytest.raises(TimeoutError):  # the turn waits for the client
            ws.recv(timeout=0.3)
        send(ws, {"toolResponse": {"functionResponses": [{"id": call["id"], "response": {"sky": "clear"}}]}})
        after = read_turn(ws)
        assert turn_text(after) == "It is sunny in Paris." and "usageMetadata" in after[-1]
    assert '"sky": "clear"' in engine.prompts[-1] and '"name": "get_weather"' in engine.prompts[-1]


def test_interrupting_a_pending_call_cancels_it(server: RunningServer, engine: FakeEngine):
    engine.script = [render_call("get_weather", {"city": "Oslo"}), "alpha beta"]
    with open_session(server, API_KEY, {"tools": [WEATHER_TOOL]}) as ws:
        send(ws, user_turn("Weather in Oslo?"))
        call_id = read_turn(ws)[-1]["toolCall"]["functionCalls"][0]["id"]
        send(ws, user_turn("Never mind."))
        assert receive(ws) == {"toolCallCancellation": {"ids": [call_id]}}
        assert turn_text(read_turn(ws)) == "alpha beta"
    assert "get_weather" not in engine.prompts[-1].split("Weather in Oslo?")[1]


def test_history_without_turn_complete_then_a_turn(server: RunningServer, engine: FakeEngine):
    with open_session(server, API_KEY, {"generationConfig": {"maxOutputTokens": 1}}) as ws:
        history = [
            {"role": "user", "parts": [{"text": "My name is Ada."}]},
            {"role": "model", "parts": [{"text": "Hello Ada."}]},
        ]
        send(ws, {"clientContent": {"turns": history}})
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
        send(ws, user_turn("What is my name?"))
        assert turn_text(read_turn(ws)) == "alpha"
    assert "User: My name is Ada.\nModel: Hello Ada.\nUser: What is my name?" in engine.prompts[-1]


# Context window ---------------------------------------------------------------------------------------------


def test_sliding_window_drops_the_oldest_turns(server: RunningServer, engine: FakeEngine):
    setup = {
        "systemInstruction": {"parts": [{"text": "Stay kind."}]},
        "generationConfig": {"maxOutputTokens": 2},
        "contextWindowCompression": {"triggerTokens": 300, "slidingWindow": {"targetTokens": 150}},
    }
    with open_session(server, API_KEY, setup) as ws:
        for n in range(12):
            send(ws, user_turn(f"Message number {n:02d}, padded to be long enough." + " pad" * 5))
            assert turn_text(read_turn(ws)) == "alpha beta"
    last = engine.prompts[-1]
    assert "Stay kind." in last and "Message number 11" in last and "Message number 00" not in last
    assert max(len(p) for p in engine.prompts) <= 300 + 80  # past the trigger only by the turn that crossed it


def test_without_compression_a_full_window_ends_the_session_clearly(server: RunningServer):
    with open_session(server, API_KEY) as ws:
        send(ws, user_turn("word " * 1000))  # 5,000 tokens for the fake model's window of 4,096
        code, reason, _ = closed(ws)
    assert code == 1007 and "exceeds" in reason
    _healthy(server)


# Resumption ------------------------------------------------------------------------------------------------


def _handle_after(ws) -> str:
    update = receive(ws)["sessionResumptionUpdate"]
    assert update["resumable"] is True
    return update["newHandle"]


def test_resumption_continues_the_conversation_after_a_restart(start: Start, engine: FakeEngine, clock: Clock):
    first = start()
    setup = {"sessionResumption": {}, "generationConfig": {"maxOutputTokens": 2}}
    with open_session(first, API_KEY, setup) as ws:
        send(ws, user_turn("Remember the number 42."))
        read_turn(ws)
        older = _handle_after(ws)
        send(ws, user_turn("And 43."))
        read_turn(ws)
        handle = _handle_after(ws)
    first.stop()
    second = start()  # a restart: same database, nothing in memory
    for key, stale, fragment in (
        (OTHER_KEY, handle, "not valid"),
        (API_KEY, older, "not valid"),
        (API_KEY, "junk", "not valid"),
    ):
        with connect(live_url(second, f"key={key}")) as ws:
            ws.send(json.dumps({"setup": {"model": MODEL, "sessionResumption": {"handle": stale}}}))
            code, reason, _ = closed(ws)
        assert code == 1008 and fragment in reason
    with open_session(second, API_KEY, {**setup, "sessionResumption": {"handle": handle}}) as ws:
        send(ws, {"realtimeInput": {"text": "Which numbers?"}})
        read_turn(ws)
        newest = _handle_after(ws)
    assert (
        "User: Remember the number 42.\nModel: alpha beta\nUser: And 43.\nModel: alpha beta\nUser: Which numbers?"
        in (engine.prompts[-1])
    )
    clock.now += timedelta(hours=2, seconds=1)  # handles live two hours, as Google's
    with connect(live_url(second, f"key={API_KEY}")) as ws:
        ws.send(json.dumps({"setup": {"model": MODEL, "sessionResumption": {"handle": newest}}}))
        assert closed(ws)[0] == 1008


# Ephemeral tokens ---------------------------------------------------------------------------------------------


def _token(server: RunningServer, body: dict[str, Any], version: str = "v1alpha") -> httpx.Response:
    return httpx.post(f"{server.url}/{version}/auth_tokens", json=body, headers={"x-goog-api-key": API_KEY})


def _constrained(server: RunningServer, token: str, setup: dict[str, Any], header: bool = False):
    if header:
        url = live_url(server, version="v1alpha", method=CONSTRAINED)
        ws = connect(url, additional_headers={"Authorization": f"Token {token}"})
    else:
        ws = connect(live_url(server, f"access_token={token}", version="v1alpha", method=CONSTRAINED))
    config = {"responseModalities": ["TEXT"], **setup.get("generationConfig", {})}
    ws.send(json.dumps({"setup": {"model": MODEL, **setup, "generationConfig": config}}))
    return ws


def test_ephemeral_tokens_uses_methods_and_expiry(server: RunningServer, clock: Clock):
    created = _token(server, {"uses": 1})
    assert created.status_code == 200, created.text
    token = created.json()["name"]
    assert token.startswith("auth_tokens/")
    # REST does not take a token; nor does the unconstrained method.
    rest = httpx.get(f"{server.url}/v1beta/models", headers={"x-goog-api-key": token})
    assert rest.status_code == 400
    with connect(live_url(server, f"key={token}")) as ws:
        ws.send(json.dumps(SETUP))
        code, reason, _ = closed(ws)
    assert code == 1008 and "Constrained" in reason
    with _constrained(server, token, {"generationConfig": {"maxOutputTokens": 1}}, header=True) as ws:
        assert receive(ws) == {"setupComplete": {}}
        send(ws, user_turn("Hi"))
        assert turn_text(read_turn(ws)) == "alpha"
    with _constrained(server, token, {}) as ws:
        code, reason, _ = closed(ws)
    assert code == 1008 and "used up" in reason
    unlimited = _token(server, {"uses": 0}, version="v1beta").json()["name"]
    for _ in range(3):
        with _constrained(server, unlimited, {}) as ws:
            assert receive(ws) == {"setupComplete": {}}
    clock.now += timedelta(seconds=61)  # past newSessionExpireTime (default: a minute)
    with _constrained(server, unlimited, {}) as ws:
        code, reason, _ = closed(ws)
    assert code == 1008 and "newSessionExpireTime" in reason


def test_ephemeral_token_locks_the_setup(server: RunningServer):
    locked = {
        "model": MODEL,
        "generationConfig": {"maxOutputTokens": 2, "responseModalities": ["TEXT"]},
        "systemInstruction": {"parts": [{"text": "Locked."}]},
    }
    whole = _token(server, {"bidiGenerateContentSetup": locked}).json()["name"]
    with _constrained(server, whole, {"generationConfig": {"maxOutputTokens": 5}}) as ws:
        assert receive(ws) == {"setupComplete": {}}
        send(ws, user_turn("Hi"))
        assert turn_text(read_turn(ws)) == "alpha beta"  # the token's setup, not the client's
    masked = _token(server, {"bidiGenerateContentSetup": locked, "fieldMask": "generationConfig.maxOutputTokens"})
    with _constrained(
        server, masked.json()["name"], {"generationConfig": {"maxOutputTokens": 5, "temperature": 0}}
    ) as ws:
        assert receive(ws) == {"setupComplete": {}}
        send(ws, user_turn("Hi"))
        assert turn_text(read_turn(ws)) == "alpha beta"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"uses": -1}, "negative"),
        ({"expireTime": "2000-01-01T00:00:00Z"}, "future"),
        ({"newSessionExpireTime": "2999-01-01T00:00:00Z"}, "20 hours"),
        ({"bidiGenerateContentSetup": {"model": "models/no-such-model"}}, "no-such-model"),
        ({"fieldMask": "model"}, "bidiGenerateContentSetup"),
        ({"bidiGenerateContentSetup": {"model": MODEL}, "fieldMask": "nonsense"}, "nonsense"),
        ({"name": "auth_tokens/mine"}, "name"),
    ],
)
def test_bad_token_requests_are_refused(server: RunningServer, body, fragment):
    response = _token(server, body)
    assert response.status_code in (400, 404) and fragment in response.json()["error"]["message"], response.text


# The Python SDK, over wss:// ------------------------------------------------------------------------------


def test_the_python_sdk_calls_tools_and_uses_ephemeral_tokens(server: RunningServer, engine: FakeEngine, certificate):
    """google-genai's own Live client (it always speaks wss://): send_tool_response answers a toolCall,
    and tokens.create's token opens a constrained session with its locked setup."""
    tls = start_server(server.app, certificate=certificate, lifespan="off")
    try:
        options = {"base_url": tls.url, "async_client_args": {"ssl": trusting(certificate)}}
        client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(**options))
        engine.script = [render_call("get_weather", {"city": "Paris"}), "Sunny."]
        weather = types.FunctionDeclaration(**WEATHER_TOOL["functionDeclarations"][0])
        config = types.LiveConnectConfig(
            response_modalities=["TEXT"], tools=[types.Tool(function_declarations=[weather])]
        )

        async def tools() -> str:
            async with client.aio.live.connect(model=MODEL, config=config) as session:
                await session.send_realtime_input(text="Weather in Paris?")
                async for message in session.receive():
                    if message.tool_call:
                        call = message.tool_call.function_calls[0]
                        assert call.name == "get_weather" and call.args == {"city": "Paris"}
                        await session.send_tool_response(
                            function_responses=[types.FunctionResponse(id=call.id, name=call.name, response={"ok": 1})]
                        )
                        break
                return "".join([m.text or "" async for m in session.receive()])

        assert asyncio.run(tools()) == "Sunny."

        creator = genai.Client(
            api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url, api_version="v1alpha")
        )
        constraints = types.LiveConnectConstraints(
            model=MODEL, config=types.LiveConnectConfig(response_modalities=["TEXT"], max_output_tokens=2)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", genai_errors.ExperimentalWarning)
            token = creator.auth_tokens.create(
                config=types.CreateAuthTokenConfig(uses=1, live_connect_constraints=constraints)
            )
        assert token.name.startswith("auth_tokens/")
        holder = genai.Client(api_key=token.name, http_options=types.HttpOptions(api_version="v1alpha", **options))

        async def with_token() -> str:
            async with holder.aio.live.connect(model=MODEL, config={"max_output_tokens": 9}) as session:
                await session.send_realtime_input(text="Hi")
                return "".join([m.text or "" async for m in session.receive()])

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", genai_errors.ExperimentalWarning)
            assert asyncio.run(with_token()) == "alpha beta"  # the token's locked maxOutputTokens
            with pytest.raises(genai_errors.APIError) as used_up:
                asyncio.run(with_token())
        assert used_up.value.code == 1008 and "used up" in str(used_up.value)
    finally:
        tls.stop()


# Ordering at the edges of a turn ------------------------------------------------------------------------


def test_input_right_after_turn_complete_interrupts_nothing_and_the_handle_still_comes(
    server: RunningServer, engine: FakeEngine
):
    with open_session(server, API_KEY, {"sessionResumption": {}, "generationConfig": {"maxOutputTokens": 2}}) as ws:
        messages = []
        for question in ("One", "Two", "Three"):
            send(ws, user_turn(question))
            messages += read_turn(ws)  # to turnComplete; the next question goes at once, before the handle
        messages.append(receive(ws))
    assert not any(m.get("serverContent", {}).get("interrupted") for m in messages)
    assert [list(m) for m in messages].count(["sessionResumptionUpdate"]) == 3
    assert engine.prompts[-1].endswith(
        "User: One\nModel: alpha beta\nUser: Two\nModel: alpha beta\nUser: Three\nModel:"
    )


def test_a_response_by_name_and_a_late_response_after_cancellation(server: RunningServer, engine: FakeEngine):
    engine.script = [
        render_call("get_weather", {"city": "Rome"}),
        "Warm.",
        render_call("get_weather", {"city": "Oslo"}),
    ]
    with open_session(server, API_KEY, {"tools": [WEATHER_TOOL], "generationConfig": {"maxOutputTokens": 40}}) as ws:
        send(ws, user_turn("Weather in Rome?"))
        assert "toolCall" in read_turn(ws)[-1]
        send(ws, {"toolResponse": {"functionResponses": [{"name": "get_weather", "response": {"t": 25}}]}})  # no id
        assert turn_text(read_turn(ws)) == "Warm."
        send(ws, user_turn("And Oslo?"))
        call_id = read_turn(ws)[-1]["toolCall"]["functionCalls"][0]["id"]
        send(ws, user_turn("Forget it."))
        assert receive(ws) == {"toolCallCancellation": {"ids": [call_id]}}
        late = {"toolResponse": {"functionResponses": [{"id": call_id, "name": "get_weather", "response": {"t": -3}}]}}
        send(ws, late)  # too late: dropped, never a response without its call
        read_turn(ws)
        send(ws, user_turn("Bye."))
        read_turn(ws)
    assert '"t": 25' in engine.prompts[-1] and '"t": -3' not in engine.prompts[-1]


def test_queued_input_keeps_its_place_when_client_content_interrupts(server: RunningServer, engine: FakeEngine):
    engine.delay = 0.05
    setup = {
        "generationConfig": {"maxOutputTokens": 100},
        "realtimeInputConfig": {"activityHandling": "NO_INTERRUPTION"},
    }
    with open_session(server, API_KEY, setup) as ws:
        send(ws, {"realtimeInput": {"text": "First"}})
        assert "modelTurn" in receive(ws)["serverContent"]
        send(ws, {"realtimeInput": {"text": "Queued"}})
        engine.delay = 0.002
        send(ws, user_turn("Now this."))
        messages = []
        while not messages or not messages[-1].get("serverContent", {}).get("turnComplete"):
            messages.append(receive(ws))
        with pytest.raises(TimeoutError):  # no second, out-of-order turn for the queued text
            ws.recv(timeout=0.5)
    assert {"serverContent": {"interrupted": True}} in messages
    # The queued text, then the new input (one user turn, as the template joins them), and one answer.
    assert engine.prompts[-1].endswith("User: Queued\n\nNow this.\nModel:") and len(engine.prompts) == 2


def test_a_refused_session_spends_no_token_use(server: RunningServer):
    token = _token(server, {"uses": 1}).json()["name"]
    with _constrained(server, token, {"generationConfig": {"temperature": "hot"}}) as ws:
        assert closed(ws)[0] == 1007
    with _constrained(server, token, {}) as ws:
        assert receive(ws) == {"setupComplete": {}}


def test_the_sliding_window_never_leaves_a_response_without_its_call(server: RunningServer, engine: FakeEngine):
    engine.script = [render_call("get_weather", {"city": "Lima"}), "Mild."]
    setup = {
        "tools": [WEATHER_TOOL],
        "generationConfig": {"maxOutputTokens": 40},
        "contextWindowCompression": {"triggerTokens": 150, "slidingWindow": {"targetTokens": 10}},
    }
    with open_session(server, API_KEY, setup) as ws:
        send(ws, user_turn("Weather in Lima? " + "Please. " * 10))
        call_id = read_turn(ws)[-1]["toolCall"]["functionCalls"][0]["id"]
        send(ws, {"toolResponse": {"functionResponses": [{"id": call_id, "response": {"sky": "grey"}}]}})
        assert turn_text(read_turn(ws)) == "Mild."
    assert "Weather in Lima?" in engine.prompts[-1] and '"sky": "grey"' in engine.prompts[-1]

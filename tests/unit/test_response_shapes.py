"""Response shapes Google's recordings show, without a model: finishMessage, turnToken, countTokens' breakdown."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest

from localgem.engines.base import CandidateFinished, FinishReason, TextDelta
from localgem.generation import tool_prompt as tools
from localgem.generation.chat_template import ChatTemplate
from localgem.generation.function_calling import CallRules, ToolPlan
from localgem.generation.loaded import LoadedModel
from localgem.generation.prompt_builder import PromptBuilder
from localgem.generation.responses import (
    FUNCTION_CALLS_MESSAGE,
    ResponseShape,
    StreamChunker,
    UnaryResponseBuilder,
    turn_token,
)
from localgem.generation.token_counts import token_breakdown
from localgem.models.builtin import GEMMA3_TEMPLATE
from localgem.types.content import Content, Part
from tests.conftest import API_KEY
from tests.fakes import FakeEngine
from tests.server import RunningServer
from tests.tool_templates import HERMES_TEMPLATE

CALL = '<tool_call>\n{"name": "get_weather", "args": {"city": "Paris"}}\n</tool_call>'


def _shape(function_calling: bool = True, rules: CallRules | None = None) -> ResponseShape:
    return ResponseShape(
        response_id="NmuSaYCTD4Ha-8YPm4GDqAk",
        model_version="m",
        prompt_tokens=5,
        logprobs=False,
        function_calling=function_calling,
        call_rules=rules,
    )


def _unary(
    *texts: str, reason: FinishReason = FinishReason.STOP, function_calling: bool = True, rules: CallRules | None = None
) -> dict:
    builder = UnaryResponseBuilder(_shape(function_calling, rules))
    for text in texts:
        builder.add(TextDelta(0, text))
    builder.add(CandidateFinished(0, reason, 9))
    return builder.build().to_wire()["candidates"][0]


def test_a_candidate_ending_in_function_calls_has_googles_finish_message() -> None:
    candidate = _unary("Let me look.", CALL)
    assert FUNCTION_CALLS_MESSAGE == "Model generated function call(s)."
    assert candidate["finishReason"] == "STOP" and candidate["finishMessage"] == FUNCTION_CALLS_MESSAGE
    assert [p.get("functionCall", {}).get("name") for p in candidate["content"]["parts"]] == [None, "get_weather"]


@pytest.mark.parametrize(
    ("texts", "function_calling", "reason"),
    [
        (("Sunny, I think.",), True, "STOP"),  # tools declared, text answer
        (("Sunny.",), False, "STOP"),
    ],
)
def test_no_finish_message_without_a_complete_call(texts: tuple[str, ...], function_calling: bool, reason: str) -> None:
    candidate = _unary(*texts, function_calling=function_calling)
    assert candidate["finishReason"] == reason and "finishMessage" not in candidate


WEATHER_RULES = {"get_weather": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.mark.parametrize(
    ("texts", "required", "reason", "problem"),
    [
        ((CALL[:30],), False, FinishReason.MAX_TOKENS, "cut off"),
        ((CALL.replace("get_weather", "get_time"),), False, FinishReason.STOP, "'get_time', which is not a declared"),
        ((CALL.replace('"Paris"', "7"),), False, FinishReason.STOP, "7 is not of type 'string'"),
        ((CALL.replace('"city"', '"town"'),), False, FinishReason.STOP, "'city' is a required property"),
        (("Sunny.",), True, FinishReason.STOP, "mode ANY requires one"),
    ],
)
def test_calls_that_break_the_declarations_are_malformed(
    texts: tuple[str, ...], required: bool, reason: FinishReason, problem: str
) -> None:
    """Every call is checked against the declarations (an upstream engine's tools API may not enforce them)."""
    candidate = _unary(*texts, reason=reason, rules=CallRules(WEATHER_RULES, required))
    assert candidate["finishReason"] == "MALFORMED_FUNCTION_CALL"
    assert candidate["finishMessage"].startswith("Malformed function call: ") and problem in candidate["finishMessage"]
    assert all(
        "functionCall" not in p or p["functionCall"]["name"] != "get_time" for p in candidate["content"]["parts"]
    )


def test_calls_that_follow_the_declarations_pass() -> None:
    assert _unary(CALL, rules=CallRules(WEATHER_RULES, required=True))["finishReason"] == "STOP"
    # Mode ANY cut off at the token limit before any call: the limit, not a malformed call.
    assert _unary("Sun", reason=FinishReason.MAX_TOKENS, rules=CallRules(WEATHER_RULES, True))["finishReason"] == (
        "MAX_TOKENS"
    )


def test_streamed_call_comes_whole_in_the_last_chunk_with_the_finish_message() -> None:
    chunker = StreamChunker(_shape(), candidates=1)
    events = [TextDelta(0, "Checking. "), TextDelta(0, CALL[:12]), TextDelta(0, CALL[12:])]
    chunks = [chunker.add(e) for e in [*events, CandidateFinished(0, FinishReason.STOP, 20)]]
    wire = [c.to_wire() for c in chunks if c is not None]
    last = wire[-1]["candidates"][0]
    assert last["finishReason"] == "STOP" and last["finishMessage"] == FUNCTION_CALLS_MESSAGE
    assert last["content"]["parts"][-1]["functionCall"]["args"] == {"city": "Paris"}
    assert all("finishMessage" not in c["candidates"][0] for c in wire[:-1])
    assert {c["turnToken"] for c in wire} == {turn_token("NmuSaYCTD4Ha-8YPm4GDqAk")}


def test_turn_token_has_googles_layout() -> None:
    # Google's, from a recorded response whose responseId is NmuSaYCTD4Ha-8YPm4GDqAk.
    assert turn_token("NmuSaYCTD4Ha-8YPm4GDqAk") == (
        "v1_ChdObXVTYVlDVEQ0SGEtOFlQbTRHRHFBaxIXTm11U2FZQ1RENEhhLThZUG00R0RxQWs"
    )
    token = turn_token("x" * 200)  # a length over 127 takes a two-byte varint
    raw = base64.urlsafe_b64decode(token[3:] + "=" * (-len(token[3:]) % 4))
    assert raw[:3] == b"\x0a\xc8\x01" and raw.count(b"x" * 200) == 2


# countTokens' breakdown on the fake engine: a token is a character and the template is the fallback
# one ("User: …\n", "Model: …\n", system text then a blank line, "Model:" to open the answer).


@pytest.fixture
def http(fake_server: RunningServer):
    with httpx.Client(base_url=fake_server.url, headers={"x-goog-api-key": API_KEY}, timeout=30) as client:
        yield client


def _count(http: httpx.Client, body: dict) -> dict:
    response = http.post("/v1beta/models/gemini-2.5-flash:countTokens", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    pieces = data["contentTokens"]
    system = data["systemInstructionsTokens"]
    added = sum(sum(c["partTokens"]) + c["roleTokens"] for c in pieces)
    assert added + sum(system.get("partTokens", [])) + system.get("roleTokens", 0) == data["totalTokens"]
    assert data["promptTokensDetails"] == [{"modality": "TEXT", "tokenCount": data["totalTokens"]}]
    return data


def test_count_tokens_breaks_the_prompt_down_as_google_does(http: httpx.Client) -> None:
    fox = "The quick brown fox jumps over the lazy dog."
    data = _count(http, {"contents": [{"role": "user", "parts": [{"text": fox}]}]})
    # "User: " + fox + "\n" + "Model:": the turn's markers and the generation prompt are the role's.
    assert data == {
        "totalTokens": 57,
        "contentTokens": [{"partTokens": [44], "roleTokens": 13}],
        "systemInstructionsTokens": {},
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 57}],
    }


def test_count_tokens_of_parts_turns_and_system_instruction(http: httpx.Client) -> None:
    request = {
        "systemInstruction": {"parts": [{"text": "Be "}, {"text": "brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hello "}, {"text": "world"}]},
            {"role": "model", "parts": [{"text": "Hi"}]},
            {"role": "user", "parts": [{"text": "ok"}]},
            {"role": "user", "parts": [{"text": "go"}]},  # joins the turn before: "\n\n" is its overhead
        ],
    }
    data = _count(http, {"generateContentRequest": {"model": "models/gemini-2.5-flash", **request}})
    assert data["systemInstructionsTokens"] == {"partTokens": [3, 6], "roleTokens": 2}  # "\n\n" after it
    assert data["contentTokens"] == [
        {"partTokens": [6, 5], "roleTokens": 7},  # "User: " "\n"
        {"partTokens": [2], "roleTokens": 8},  # "Model: " "\n"
        {"partTokens": [2], "roleTokens": 7},
        {"partTokens": [2], "roleTokens": 2 + 6},  # "\n\n", then the generation prompt "Model:"
    ]
    assert data["totalTokens"] == len("Be brief.\n\nUser: Hello world\nModel: Hi\nUser: ok\n\ngo\nModel:")


def test_count_tokens_puts_function_declarations_with_the_system_instruction(http: httpx.Client) -> None:
    tools = [{"functionDeclarations": [{"name": "get_weather", "description": "Weather of a city."}]}]
    request = {"contents": [{"parts": [{"text": "Weather in Paris?"}]}], "tools": tools}
    data = _count(http, {"generateContentRequest": {"model": "models/gemini-2.5-flash", **request}})
    system = data["systemInstructionsTokens"]
    assert "partTokens" not in system and system["roleTokens"] > 100  # the listed functions
    assert data["contentTokens"] == [{"partTokens": [17], "roleTokens": 13}]


def test_a_template_that_folds_the_system_instruction_into_the_first_turn() -> None:
    # Gemma's template writes the system text inside the first user turn, after its marker: the
    # system instruction's share is what it adds to the prompt, which the first turn gives up.
    loaded = LoadedModel(None, FakeEngine(), ChatTemplate(GEMMA3_TEMPLATE, bos_token="", eos_token=""))  # type: ignore[arg-type]
    builder = PromptBuilder(
        loaded,
        [Content(role="user", parts=[Part(text="Hi")]), Content(role="model", parts=[Part(text="Yo")])],
        Content(parts=[Part(text="Be brief.")]),
    )
    total = len(asyncio.run(builder.tokens()))
    pieces = asyncio.run(token_breakdown(builder, total))
    assert pieces.system.to_wire() == {"partTokens": [9], "roleTokens": 2}  # "Be brief." "\n\n"
    assert [c.to_wire() for c in pieces.contents] == [
        {"partTokens": [2], "roleTokens": len("<start_of_turn>user\n<end_of_turn>\n")},
        {"partTokens": [2], "roleTokens": len("<start_of_turn>model\n<end_of_turn>\n<start_of_turn>model\n")},
    ]
    assert total == 11 + 2 + 34 + 2 + 56


def test_a_template_that_formats_tools_itself() -> None:
    # The Hermes/Qwen-style template reads messages[0] to place its tools, so it cannot render the
    # tools alone: their share is what they add to the prompt, which the first turn gives up.
    loaded = LoadedModel(None, FakeEngine(), ChatTemplate(HERMES_TEMPLATE, bos_token="", eos_token=""))  # type: ignore[arg-type]
    plan = ToolPlan("AUTO", [tools.Function("add", "Adds.", {"type": "object", "properties": {}})])
    builder = PromptBuilder(loaded, [Content(role="user", parts=[Part(text="Add 1 and 2.")])], None, plan)
    total = len(asyncio.run(builder.tokens()))
    without_tools = len(PromptBuilder(loaded, builder.contents, None).render())
    pieces = asyncio.run(token_breakdown(builder, total))
    assert pieces.system.to_wire() == {"roleTokens": total - without_tools}
    # The turn costs what it costs without tools: its markers and the generation prompt.
    assert [c.to_wire() for c in pieces.contents] == [{"partTokens": [12], "roleTokens": without_tools - 12}]


def test_a_template_that_refuses_part_of_the_conversation() -> None:
    # Prefixes ending in a model turn are refused: each content is then its parts, the rest the last turn's.
    strict = (
        "{% if messages[-1]['role'] != 'user' %}{{ raise_exception('the last turn must be the user') }}{% endif %}"
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}[assistant]"
    )
    loaded = LoadedModel(None, FakeEngine(), ChatTemplate(strict, bos_token="", eos_token=""))  # type: ignore[arg-type]
    turns = [("user", "Hi"), ("model", "Yo"), ("user", "Bye")]
    builder = PromptBuilder(loaded, [Content(role=r, parts=[Part(text=t)]) for r, t in turns], None)
    total = len(asyncio.run(builder.tokens()))
    pieces = asyncio.run(token_breakdown(builder, total))
    assert pieces.system.to_wire() == {}
    assert [c.to_wire() for c in pieces.contents] == [
        {"partTokens": [2], "roleTokens": 0},
        {"partTokens": [2], "roleTokens": 0},
        {"partTokens": [3], "roleTokens": total - 7},
    ]

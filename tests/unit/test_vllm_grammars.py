"""What localgem asks vLLM to enforce compiles in vLLM's grammar engine, xgrammar, and means what it should:
the request fields the upstream engine builds for vLLM (``structured_outputs.grammar``, GBNF; a structural tag
for optional function calls), compiled over SmolLM2's vocabulary and run on sample outputs, no GPU needed.

``make install-test`` installs xgrammar; skipped without it, unless ``LOCALGEM_REQUIRE_UPSTREAM=1`` (CI).
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

import pytest

from localgem.engines.base import ChoiceOutput, JsonOutput, OutputConstraint, ToolCalls, ToolFunction
from localgem.engines.openai.engine import VLLM, OpenAIEngine

try:
    import xgrammar
except ImportError:
    if os.environ.get("LOCALGEM_REQUIRE_UPSTREAM") == "1":
        raise
    pytest.skip("xgrammar is not installed: make install-test", allow_module_level=True)

WEATHER = ToolFunction(
    "get_weather", {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
)


@cache
def compiler() -> Any:
    from transformers import AutoTokenizer

    from localgem.models.packaged import smollm2_135m_instruct

    gguf = smollm2_135m_instruct(None)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=49152))


def vllm_fields(constraint: OutputConstraint) -> dict[str, Any]:
    engine = object.__new__(OpenAIEngine)  # its request builder alone: no server to ask
    engine.flavour = VLLM
    return engine._constraint_fields(constraint)


def matcher(fields: dict[str, Any]) -> Any:
    if "structured_outputs" in fields:
        return xgrammar.GrammarMatcher(compiler().compile_grammar(fields["structured_outputs"]["grammar"]))
    tag = fields["response_format"]
    assert tag["type"] == "structural_tag"
    # As vLLM reads this (legacy) form of a structural tag.
    items = [
        xgrammar.StructuralTagItem(begin=s["begin"], schema=json.dumps(s["schema"]), end=s["end"])
        for s in tag["structures"]
    ]
    return xgrammar.GrammarMatcher(compiler().compile_structural_tag(items, tag["triggers"]))


def accepts(fields: dict[str, Any], output: str) -> bool:
    return matcher(fields).accept_string(output)


def test_json_schemas_with_bounds_and_lengths() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 8},
            "age": {"type": "integer", "minimum": 30, "maximum": 35},
        },
        "required": ["city", "age"],
    }
    fields = vllm_fields(JsonOutput(schema))
    assert accepts(fields, '{"city": "Paris", "age": 31}')
    assert not accepts(fields, '{"city": "Paris", "age": 36')
    assert not accepts(fields, '{"city": "Copenhagen"')  # longer than maxLength
    assert not accepts(fields, '{"town"')
    assert accepts(vllm_fields(JsonOutput(None)), '{"any": [1, 2.5, "x", null, {"deep": true}]}')


def test_an_enum_answered_as_text() -> None:
    fields = vllm_fields(ChoiceOutput(("red", "green", "blue")))
    assert accepts(fields, "green")
    assert not accepts(fields, "purple")


def test_required_function_calls() -> None:
    fields = vllm_fields(ToolCalls((WEATHER,), True, "<tool_call>", "</tool_call>", "arguments", 2))
    assert accepts(fields, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>')
    assert not accepts(fields, "It is sunny.")
    assert not accepts(fields, '<tool_call>\n{"name": "get_time"')
    assert not accepts(fields, '<tool_call>\n{"name": "get_weather", "arguments": {"town"')


def test_optional_function_calls_as_a_structural_tag() -> None:
    fields = vllm_fields(ToolCalls((WEATHER,), False, "<tool_call>", "</tool_call>", "arguments", 2))
    assert "response_format" in fields
    assert accepts(fields, "I can check that for you.")  # free text: no call
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    assert accepts(fields, "Let me look. " + call)
    assert not accepts(fields, 'Let me look. <tool_call>\n{"name": "get_weather", "arguments": {"town": "Oslo"}}')

"""The engine contract's parts around engines: which engine a model names, engine-neutral output
constraints and how llama.cpp enforces them, and capabilities that callers check."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from pydantic import ValidationError

from localgem.engines.base import ChoiceOutput, EngineCapabilities, JsonLimits, JsonOutput, UnenforceableSchema
from localgem.engines.llama.constraints import grammar_for
from localgem.engines.registry import ENGINES, check_constraint, engine_kind
from localgem.generation.function_calling import ToolPlan
from localgem.generation.loaded import EnginePool, KeptPrefixes
from localgem.generation.tool_prompt import CALL_OPEN, Function
from localgem.models.registry import ModelEntry
from localgem.settings import ModelConfig, load_settings
from tests.fakes import FakeEngine

FORECAST = Function("forecast", "", {"type": "object", "properties": {"city": {"type": "string"}}})


def test_models_get_their_tasks_engine_unless_they_name_one() -> None:
    assert ModelConfig(id="chat", path="m.gguf").engine == "llama.cpp"
    assert ModelConfig(id="vectors", path="folder", task="embed").engine == "embedding"
    assert ModelConfig(id="chat", path="m.gguf", engine="llama.cpp").engine == "llama.cpp"
    assert {task for kind in ENGINES.values() for task in kind.tasks} == {"generate", "embed", "image", "video"}
    assert ModelConfig(id="pictures", path="folder", task="image").engine == "diffusers"


def test_an_unknown_engine_or_one_for_another_task_is_a_settings_error() -> None:
    with pytest.raises(ValidationError, match=r"model 'chat': unknown engine 'vllm'; the engines are 'llama.cpp'"):
        load_settings(environ={}, models=[{"id": "chat", "path": "m.gguf", "engine": "vllm"}])
    with pytest.raises(ValidationError, match="engine 'embedding' runs embed models, not generate models"):
        ModelConfig(id="chat", path="m.gguf", engine="embedding")
    with pytest.raises(ValueError, match="unknown engine"):
        engine_kind("", "generate")


def test_engine_checks_refuse_what_they_cannot_enforce_without_a_model() -> None:
    check_constraint("llama.cpp", JsonOutput({"type": "string", "pattern": "^a+$"}))
    with pytest.raises(UnenforceableSchema) as caught:
        check_constraint("llama.cpp", JsonOutput({"type": "string", "pattern": "["}))
    assert caught.value.path is None  # the schema as a whole: the caller names its field
    with pytest.raises(UnenforceableSchema) as caught:
        check_constraint("llama.cpp", JsonOutput({"type": "number", "minimum": 0.5}))
    assert caught.value.path == "root"
    with pytest.raises(UnenforceableSchema, match="cannot constrain"):
        check_constraint("embedding", JsonOutput(None))


def test_tool_calls_are_lazy_unless_required() -> None:
    auto = ToolPlan("AUTO", [FORECAST]).constraint("args", JsonLimits(40, 6))
    required = ToolPlan("ANY", [FORECAST]).constraint("arguments")
    assert auto is not None and required is not None and not auto.required and required.required
    lazy, strict = grammar_for(auto), grammar_for(required)
    assert lazy.trigger == CALL_OPEN and strict.trigger is None
    assert f'root ::= "{CALL_OPEN}"' in strict.gbnf and "root ::= " + '"\\n"? call' in lazy.gbnf
    assert "call-0-arguments-kv ::=" in strict.gbnf and "call-0-args-kv ::=" in lazy.gbnf
    assert ToolPlan("NONE", []).constraint("args") is None


def test_grammars_are_built_once_per_constraint_and_keep_property_order() -> None:
    schema = {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "integer"}}}
    first = grammar_for(JsonOutput(schema, JsonLimits(10, 2)))
    assert grammar_for(JsonOutput(dict(schema), JsonLimits(10, 2))) is first
    reordered = {**schema, "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}
    assert grammar_for(JsonOutput(reordered, JsonLimits(10, 2))).gbnf != first.gbnf
    assert grammar_for(ChoiceOutput(("yes", 'say "no"'))).gbnf == 'root ::= "yes" | "say \\"no\\""'
    assert "root ::=" in grammar_for(JsonOutput(None)).gbnf


def test_kept_prefixes_are_only_asked_of_engines_that_keep_them() -> None:
    engine = FakeEngine()
    entry = ModelEntry.from_config(ModelConfig(id="chat", path="m.gguf"))
    forgotten: list[tuple[str, str]] = []
    kept = KeptPrefixes(EnginePool(lambda _entry: engine), lambda model, key: forgotten.append((model, key)))

    async def scenario() -> None:
        await kept.drop("chat", "gone")  # not loaded: what its engine kept on disk is forgotten
        await kept.keep(entry, "c1", [1, 2, 3])
        assert engine.kept == {"c1": [1, 2, 3]}
        engine.capabilities = replace(engine.capabilities, kept_prefixes=False)
        await kept.keep(entry, "c2", [4])
        await kept.drop("chat", "c1")
        assert engine.kept == {"c1": [1, 2, 3]}

    asyncio.run(scenario())
    assert forgotten == [("chat", "gone")]
    assert EngineCapabilities() == EngineCapabilities(constrained_output=False, kept_prefixes=False, logprobs=False)

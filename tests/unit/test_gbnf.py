"""The GBNF follower: it reads llama.cpp's grammar syntax as llama.cpp does, and the completions it
proposes finish every prefix of a structured output into JSON that parses and validates, that
llama.cpp's own grammar sampler accepts token by token."""

from __future__ import annotations

import ctypes
import json
import random
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from localgem.engines.base import JsonLimits
from localgem.engines.llama import schema_grammar as schemas
from localgem.engines.llama.closing import BudgetCloser
from localgem.engines.llama.constraints import grammar_for
from localgem.engines.llama.gbnf import CompiledGrammar, GrammarFollower, GrammarSyntaxError, _Chars, compile_grammar
from localgem.generation.function_calling import ToolPlan
from localgem.generation.tool_prompt import Function
from localgem.models.packaged import smollm2_135m_instruct

LIMITS = JsonLimits(string_chars=40, items=6)


def accepts(grammar: str, text: str) -> bool:
    compiled = CompiledGrammar(grammar)
    state = compiled.advance(compiled.initial(), text)
    return CompiledGrammar.complete(state)


def test_syntax_as_llama_cpp_reads_it() -> None:
    grammar = r"""
        root ::= greeting ("," [ \t]? name)* "!"   # a comment
        greeting ::= "h\x65llo" | "hi"
        name ::= [A-Z] [a-z]{1,3} | "\u00e9"+
    """
    assert accepts(grammar, "hello!")
    assert accepts(grammar, "hi, Bob,\tAnna,éé!")
    assert not accepts(grammar, "hi, Bobby!")  # {1,3}
    assert not accepts(grammar, "hi,!")
    assert not accepts(grammar, "hello")  # incomplete
    assert accepts('root ::= [^"\\\\]{2} | .', "é")
    assert accepts('root ::= "a"{2,} "b"?', "aaaa") and not accepts('root ::= "a"{2,} "b"?', "ab")
    for broken in ("root ::= other", 'x ::= "a"', 'root ::= "a" | (', 'root ::= "a"{3,1}'):
        with pytest.raises(GrammarSyntaxError):
            CompiledGrammar(broken)


def test_repetition_caps_bound_arrays_strings_and_open_objects() -> None:
    grammar = compile_grammar(schemas.any_json_grammar(JsonLimits(string_chars=3, items=2)))
    assert accepts(grammar_text := schemas.any_json_grammar(JsonLimits(3, 2)), '{"abc": [1, 2]}')
    assert not accepts(grammar_text, "[1, 2, 3]")
    assert not accepts(grammar_text, '{"a": 1, "b": 2, "c": 3}')
    assert not accepts(grammar_text, '["abcd"]')
    assert not accepts(grammar_text, '["a\nb"]')  # JSON strings hold no raw control characters
    assert grammar.shortest_completion(grammar.initial()) in ("{}", "[]")
    bounded = schemas.json_schema_grammar({"type": "array", "items": {"type": "integer"}}, "s", LIMITS)
    assert accepts(bounded, "[1,2,3,4,5,6]") and not accepts(bounded, "[1,2,3,4,5,6,7]")
    explicit = schemas.json_schema_grammar({"type": "array", "minItems": 8, "items": {"type": "integer"}}, "s", LIMITS)
    assert accepts(explicit, "[1,2,3,4,5,6,7,8]")


# -- completions of random prefixes, checked by jsonschema and by llama.cpp ----------------------------


def valid_schema(rng: random.Random, depth: int = 0) -> dict:
    kinds = ["string", "integer", "number", "boolean", "null", "enum", "date", "pattern"]
    if depth < 3:
        kinds += ["object", "object", "array", "anyOf", "nullable"]
    kind = rng.choice(kinds)
    if kind == "object":
        names = rng.sample(["id", "name", "tags", "inner", "count", "note"], rng.randint(0, 4))
        properties = {name: valid_schema(rng, depth + 1) for name in names}
        return {"type": "object", "properties": properties, "required": [n for n in names if rng.random() < 0.6]}
    if kind == "array":
        schema: dict = {"type": "array", "items": valid_schema(rng, depth + 1)}
        if rng.random() < 0.5:
            schema["minItems"] = rng.randint(0, 2)
        return schema
    if kind == "anyOf":
        return {"anyOf": [valid_schema(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if kind == "nullable":
        return (
            {"type": ["string", "null"]} if rng.random() < 0.5 else {"anyOf": [valid_schema(rng, 3), {"type": "null"}]}
        )
    if kind == "string":
        schema = {"type": "string"}
        if rng.random() < 0.4:
            schema["minLength"] = rng.randint(0, 3)
            schema["maxLength"] = schema["minLength"] + rng.randint(0, 5)
        return schema
    if kind == "integer":
        return {"type": "integer", "minimum": -5, "maximum": 120} if rng.random() < 0.5 else {"type": "integer"}
    if kind == "enum":
        return {"type": "string", "enum": rng.sample(["red", "green", "blue", "x"], rng.randint(1, 3))}
    if kind == "date":
        return {"type": "string", "format": rng.choice(["date", "date-time", "time"])}
    if kind == "pattern":
        return {"type": "string", "pattern": "^[a-c]+-[0-9]{2}$"}
    return {"type": kind}


def random_walk(grammar: CompiledGrammar, rng: random.Random, steps: int) -> str:
    """A random prefix of some output the grammar allows."""
    follower = GrammarFollower(grammar)
    out = ""
    for _ in range(steps):
        tops = [grammar.elements[stack[-1]] for stack in follower.state if stack]
        if not tops:
            break
        char = pick_char(rng.choice(tops), rng)
        state = grammar.advance(follower.state, char)
        if not state:
            break
        follower.state = state
        out += char
    return out


def pick_char(chars: _Chars, rng: random.Random) -> str:
    if not chars.negated:
        low, high = rng.choice(chars.ranges)
        return chr(rng.randint(low, min(high, low + 200)))
    pool = 'abcXYZ019 -_:,."\\{}[]é€'
    return next((c for c in rng.sample(pool, len(pool)) if chars.matches(ord(c))), chars.pick())


class LlamaGrammarCheck:
    """llama.cpp's grammar sampler over SmolLM2's vocabulary (the vocabulary alone is loaded)."""

    def __init__(self) -> None:
        import llama_cpp as lc

        from localgem.engines.llama.native import _init_backend

        _init_backend()
        params = lc.llama_model_default_params()
        params.vocab_only = True
        self.lc = lc
        self.model = lc.llama_model_load_from_file(str(smollm2_135m_instruct(Path("."))).encode(), params)
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.eos = lc.llama_vocab_eos(self.vocab)

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        tokens = (self.lc.llama_token * (len(data) + 8))()
        n = self.lc.llama_tokenize(self.vocab, data, len(data), tokens, len(data) + 8, False, False)
        return list(tokens[:n])

    def accepts(self, gbnf: str, text: str) -> bool:
        """Token by token, as the sampler sees an output: each allowed, then the end allowed."""
        lc = self.lc
        sampler = lc.llama_sampler_init_grammar(self.vocab, gbnf.encode(), b"root")
        assert sampler, "llama.cpp could not parse the grammar"
        try:
            for token in [*self.tokenize(text), self.eos]:
                data = np.array([(token, 0.0, 0.0)], dtype=[("id", np.int32), ("logit", np.float32), ("p", np.float32)])
                array = lc.llama_token_data_array(
                    data=data.ctypes.data_as(lc.llama_token_data_p), size=1, selected=-1, sorted=False
                )
                lc.llama_sampler_apply(sampler, ctypes.byref(array))
                if not np.isfinite(data["logit"][0]):
                    return False
                if token != self.eos:
                    lc.llama_sampler_accept(sampler, token)
            return True
        finally:
            lc.llama_sampler_free(sampler)

    def close(self) -> None:
        self.lc.llama_model_free(self.model)


@pytest.fixture(scope="module")
def llama_grammar() -> LlamaGrammarCheck:
    check = LlamaGrammarCheck()
    yield check
    check.close()


def test_completions_of_random_prefixes_parse_validate_and_pass_llama_cpp(llama_grammar: LlamaGrammarCheck) -> None:
    rng = random.Random(14)
    checked = 0
    for _ in range(60):
        schema = valid_schema(rng)
        gbnf = schemas.json_schema_grammar(schema, "s", LIMITS)
        grammar = compile_grammar(gbnf)
        for _ in range(4):
            prefix = random_walk(grammar, rng, rng.randint(0, 60))
            follower = GrammarFollower(grammar)
            follower.take(follower.after(prefix.encode()))
            completion = follower.completion()
            assert completion is not None and follower.remaining() == len(completion), (schema, prefix)
            text = prefix + completion
            assert CompiledGrammar.complete(grammar.advance(grammar.initial(), text)), (schema, text)
            jsonschema.validate(json.loads(text), schema)
            assert llama_grammar.accepts(gbnf, text), (schema, text)
            checked += 1
    assert checked == 240


def test_function_call_completions_close_the_call_block(llama_grammar: LlamaGrammarCheck) -> None:
    parameters = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}
    parameters["required"] = ["city", "days"]
    constraint = ToolPlan("ANY", [Function("forecast", "", parameters)]).constraint("args", LIMITS)
    assert constraint is not None
    gbnf = grammar_for(constraint).gbnf
    grammar = compile_grammar(gbnf)
    for prefix in ["", "<tool_call>", '<tool_call>\n{"name": "forecast", "args": {"ci']:
        follower = GrammarFollower(grammar)
        follower.take(follower.after(prefix.encode()))
        text = prefix + (follower.completion() or "")
        assert text.endswith("</tool_call>") and llama_grammar.accepts(gbnf, text), text
        call = json.loads(text.removeprefix("<tool_call>").removesuffix("</tool_call>"))
        assert call["name"] == "forecast" and set(call["args"]) == {"city", "days"}


def test_budget_closer_keeps_room_for_the_shortest_completion(llama_grammar: LlamaGrammarCheck) -> None:
    """Fed an output token by token, the closer refuses the first token after which the shortest
    completion would no longer fit; the completion from before it fits, and closes the output."""
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "string"}}}}
    schema["required"] = ["items"]
    gbnf = schemas.json_schema_grammar(schema, "s", LIMITS)
    endless = '{"items": ["Fix 123", "Fix 123", "Fix 123", "Fix 123", "Fix 123", "Fix 1'
    for budget in range(6, 30):
        closer = BudgetCloser(compile_grammar(gbnf), budget, llama_grammar.tokenize)
        taken: list[int] = []
        for token in llama_grammar.tokenize(endless):
            piece = llama_grammar.lc.llama_token_to_piece
            buffer = ctypes.create_string_buffer(64)
            n = piece(llama_grammar.vocab, token, buffer, 64, 0, False)
            if not closer.fits(buffer.raw[:n]):
                break
            closer.take()
            taken.append(token)
        output = taken + closer.closing_tokens()
        assert len(output) <= budget, budget
        text = "".join(llama_grammar_detok(llama_grammar, output))
        jsonschema.validate(json.loads(text), schema)


def llama_grammar_detok(check: LlamaGrammarCheck, tokens: list[int]) -> list[str]:
    pieces = []
    for token in tokens:
        buffer = ctypes.create_string_buffer(64)
        n = check.lc.llama_token_to_piece(check.vocab, token, buffer, 64, 0, False)
        pieces.append(buffer.raw[:n].decode())
    return pieces

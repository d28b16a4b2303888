"""Output constraints → the GBNF grammars llama.cpp's sampler enforces.

A ``JsonOutput`` becomes its schema's grammar (``schema_grammar``); a ``ChoiceOutput`` the
alternation of its values; ``ToolCalls`` a grammar of call blocks, lazy unless the calls are
required: the output is free until it writes the open tag, and what follows must match.

This module imports llama-cpp-python (which loads libllama) only when it first builds a grammar, so
that the scheduler and its tests can name ``Grammar`` without it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from localgem.engines.base import ChoiceOutput, JsonLimits, JsonOutput, OutputConstraint, ToolCalls, ToolFunction


@dataclass(frozen=True)
class Grammar:
    """A GBNF grammar the output must follow. With a ``trigger`` it is lazy: the output is free until
    it writes the trigger text, and what follows the trigger must match the grammar."""

    gbnf: str
    trigger: str | None = None


def grammar_for(constraint: OutputConstraint) -> Grammar:
    """The grammar that enforces ``constraint``; ``UnenforceableSchema`` if a schema cannot be turned
    into one."""
    # Requests with one constraint share its grammar, built once. A constraint holds dicts (not hashable):
    # it is cached by its JSON, in which the order of properties (that the grammar keeps) is kept too.
    return _cached(json.dumps([type(constraint).__name__, asdict(constraint)], ensure_ascii=False))


def check_constraint(constraint: OutputConstraint) -> None:
    """Raises ``UnenforceableSchema`` if no grammar can enforce ``constraint``. Needs no model: llama.cpp's
    own parse of the grammar, over a model's vocabulary, is ``LlamaCppEngine.check_constraint``."""
    grammar_for(constraint)


def _build(constraint: OutputConstraint) -> Grammar:
    from localgem.engines.llama import schema_grammar  # loads libllama: see the module docstring

    match constraint:
        case JsonOutput(schema=None, limits=limits):
            return Grammar(schema_grammar.any_json_grammar(limits))
        case JsonOutput(schema=schema, limits=limits):
            return Grammar(schema_grammar.json_schema_grammar(schema, None, limits))
        case ChoiceOutput(values=values):
            return Grammar(schema_grammar.choice_grammar(values))
        case ToolCalls(required=True):
            return Grammar(schema_grammar.tool_calls_grammar(constraint))
        case ToolCalls(open_tag=trigger):
            return Grammar(schema_grammar.tool_calls_grammar(constraint, after_trigger=True), trigger=trigger)
    raise ValueError(f"llama.cpp cannot enforce a {type(constraint).__name__} constraint")


@lru_cache(maxsize=64)
def _cached(key: str) -> Grammar:
    kind, fields = json.loads(key)
    return _build(_constraint(kind, fields))


def _constraint(kind: str, fields: dict[str, Any]) -> OutputConstraint:
    """A constraint back from ``asdict``'s fields."""
    if "limits" in fields:
        fields["limits"] = JsonLimits(**fields["limits"])
    if kind == ToolCalls.__name__:
        return ToolCalls(**{**fields, "functions": tuple(ToolFunction(**f) for f in fields["functions"])})
    if kind == ChoiceOutput.__name__:
        return ChoiceOutput(tuple(fields["values"]))
    return JsonOutput(**fields)

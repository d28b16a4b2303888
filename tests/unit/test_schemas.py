"""Schemas → grammars: Google's Schema as JSON Schema, keyword refusals, and exact numeric bounds (llama.cpp's
grammars)."""

from __future__ import annotations

import random
import re

import pytest

from localgem.engines.llama import schema_grammar as schemas
from localgem.generation.schemas import UnenforceableSchema, check_json_schema, google_to_json_schema
from localgem.types.tools import Schema
from localgem.types.wire import parse_message


def as_regex(gbnf_fragment: str) -> re.Pattern[str]:
    """The bound rules use only literals, classes, groups, |, ? and {m,n}: the same as a regex."""
    out = []
    for literal, rest in re.findall(r'"((?:[^"\\]|\\.)*)"|(\S)', gbnf_fragment):
        out.append(re.escape(literal) if literal else rest)
    return re.compile("".join(out))


@pytest.mark.parametrize("seed", range(40))
def test_integer_bounds_accept_exactly_the_range(seed: int) -> None:
    rng = random.Random(seed)
    low = rng.choice([None, rng.randint(-1200, 1200)])
    high = rng.choice([None, rng.randint(low if low is not None else -1200, 1500)])
    pattern = as_regex(schemas._integer_rule(low, high))
    for value in range(-1300, 1600):
        inside = (low is None or value >= low) and (high is None or value <= high)
        assert bool(pattern.fullmatch(str(value))) == inside, (low, high, value)
    assert not pattern.fullmatch("007") and not pattern.fullmatch("-0")


@pytest.mark.parametrize("seed", range(25))
def test_number_bounds_accept_exactly_the_range(seed: int) -> None:
    rng = random.Random(seed)
    low = rng.choice([None, rng.randint(-60, 60)])
    high = rng.choice([None, rng.randint(low if low is not None else -60, 80)])
    pattern = as_regex(schemas._number_rule(low, high))
    for tenths in range(-700, 900, 3):
        for text in (f"{tenths / 10:.1f}", f"{tenths / 10:.3f}", str(tenths // 10)):
            value = float(text)
            inside = (low is None or value >= low) and (high is None or value <= high)
            assert bool(pattern.fullmatch(text)) == inside, (low, high, text)


def schema(data: dict) -> Schema:
    return parse_message(Schema, data)


def test_google_schema_becomes_json_schema_in_googles_property_order() -> None:
    converted = google_to_json_schema(
        schema(
            {
                "type": "OBJECT",
                "properties": {
                    "zeta": {"type": "STRING", "enum": ["a", "b"], "format": "enum"},
                    "alpha": {"type": "INTEGER", "minimum": 1, "maximum": 5, "nullable": True},
                    "list": {"type": "ARRAY", "items": {"type": "NUMBER"}, "minItems": 1, "maxItems": 3},
                },
                "required": ["zeta"],
            }
        ),
        "response_schema",
    )
    assert list(converted["properties"]) == ["alpha", "list", "zeta"]  # alphabetical without propertyOrdering
    assert converted["properties"]["alpha"] == {
        "anyOf": [{"type": "integer", "minimum": 1, "maximum": 5}, {"type": "null"}]
    }
    ordered = google_to_json_schema(
        schema(
            {
                "type": "OBJECT",
                "properties": {"b": {"type": "STRING"}, "a": {"type": "STRING"}},
                "propertyOrdering": ["b", "a"],
            }
        ),
        "s",
    )
    assert list(ordered["properties"]) == ["b", "a"]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"type": "STRING", "format": "email"}, "s.format"),
        ({"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "minProperties": 2}, "s.min_properties"),
        ({"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "propertyOrdering": ["b"]}, "s.property_ordering"),
        ({"type": "INTEGER", "enum": ["x"]}, "s.enum"),
    ],
)
def test_unenforceable_google_keywords_are_named(data: dict, path: str) -> None:
    with pytest.raises(UnenforceableSchema) as caught:
        google_to_json_schema(schema(data), "s")
    assert caught.value.path == path


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"type": "object", "patternProperties": {"x": {}}}, "s.patternProperties"),
        ({"type": "object", "properties": {"a": {"type": "string", "format": "email"}}}, "s.properties.a.format"),
        ({"type": "array", "uniqueItems": True}, "s.uniqueItems"),
        ({"type": "number", "multipleOf": 2}, "s.multipleOf"),
        ({"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 2}]}, "s.oneOf"),
        ({"not": {"type": "string"}}, "s.not"),
    ],
)
def test_unenforceable_json_schema_keywords_are_named(data: dict, path: str) -> None:
    with pytest.raises(UnenforceableSchema) as caught:
        check_json_schema(data, "s")
    assert caught.value.path == path


def test_fractional_bounds_on_numbers_are_refused_but_rounded_on_integers() -> None:
    with pytest.raises(UnenforceableSchema):
        schemas.json_schema_grammar({"type": "number", "minimum": 0.5}, "s")
    grammar = schemas.json_schema_grammar({"type": "integer", "minimum": 0.5, "exclusiveMaximum": 3}, "s")
    assert "root ::=" in grammar
    assert schemas._bounds({"type": "integer", "minimum": 0.5, "exclusiveMaximum": 3}, "x") == (1, 2)

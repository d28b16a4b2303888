"""Structured output through google-genai on the real model: JSON that always parses and validates."""

from __future__ import annotations

import json
import random
from typing import Any

import jsonschema
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import BaseModel

MODEL = "gemini-2.5-flash"
TOPICS = ["a bakery", "a space mission", "a football team", "a library", "a garden", "a concert"]


def random_schema(rng: random.Random, depth: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Google Schema and the JSON Schema it means, written independently of localgem's converter."""
    kinds = ["STRING", "INTEGER", "NUMBER", "BOOLEAN", "ENUM"] + (["OBJECT", "ARRAY"] if depth < 2 else [])
    kind = rng.choice(kinds)
    if kind == "OBJECT":
        google: dict[str, Any] = {"type": "OBJECT", "properties": {}}
        plain: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
        for i in range(rng.randint(1, 4)):
            name = f"{rng.choice(['name', 'count', 'score', 'tags', 'info', 'flag'])}_{i}"
            google["properties"][name], plain["properties"][name] = random_schema(rng, depth + 1)
        required = [name for name in google["properties"] if rng.random() < 0.7]
        google["required"] = plain["required"] = required
    elif kind == "ARRAY":
        item_google, item_plain = random_schema(rng, depth + 1)
        low = rng.randint(0, 2)
        high = low + rng.randint(1, 3)
        google = {"type": "ARRAY", "items": item_google, "minItems": low, "maxItems": high}
        plain = {"type": "array", "items": item_plain, "minItems": low, "maxItems": high}
    elif kind == "ENUM":
        values = rng.sample(["red", "green", "blue", "small", "large", "yes", "no"], rng.randint(2, 4))
        google = {"type": "STRING", "enum": values, "format": "enum"}
        plain = {"type": "string", "enum": values}
    elif kind in ("INTEGER", "NUMBER"):
        low = rng.randint(-50, 50)
        high = low + rng.randint(0, 200)
        google = {"type": kind, "minimum": low, "maximum": high}
        plain = {"type": kind.lower(), "minimum": low, "maximum": high}
    elif kind == "STRING":
        google, plain = {"type": "STRING"}, {"type": "string"}
        if rng.random() < 0.5:
            google["maxLength"] = plain["maxLength"] = rng.randint(5, 30)
    else:
        google, plain = {"type": "BOOLEAN"}, {"type": "boolean"}
    if rng.random() < 0.2:
        google["nullable"] = True
        plain = {"anyOf": [plain, {"type": "null"}]}
    return google, plain


def schemas(count: int) -> list[tuple[dict, dict]]:
    rng = random.Random(2024)
    out = []
    while len(out) < count:
        google, plain = random_schema(rng)
        if google.get("type") in ("OBJECT", "ARRAY"):  # a document, not a lone scalar
            out.append((google, plain))
    return out


@pytest.mark.parametrize(("index", "pair"), list(enumerate(schemas(20))))
def test_random_schemas_always_parse_and_validate(client: genai.Client, index: int, pair: tuple[dict, dict]) -> None:
    google, plain = pair
    config = types.GenerateContentConfig(
        response_mime_type="application/json",
        response_schema=google,
        temperature=0.8,
        seed=index,
        max_output_tokens=600,
    )
    prompt = f"Describe {TOPICS[index % len(TOPICS)]} as JSON."
    unary = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    assert unary.candidates[0].finish_reason == types.FinishReason.STOP, unary.text
    jsonschema.validate(json.loads(unary.text), plain)
    streamed = "".join(
        chunk.text or "" for chunk in client.models.generate_content_stream(model=MODEL, contents=prompt, config=config)
    )
    jsonschema.validate(json.loads(streamed), plain)
    assert streamed == unary.text  # same seed, same constrained output


class Recipe(BaseModel):
    name: str
    minutes: int
    ingredients: list[str]


def test_pydantic_schema_and_parsed(client: genai.Client) -> None:
    response = client.models.generate_content(
        model=MODEL,
        contents="Give me a pancake recipe.",
        config=types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=Recipe, temperature=0
        ),
    )
    assert isinstance(response.parsed, Recipe)
    assert list(json.loads(response.text)) == ["name", "minutes", "ingredients"]  # the model's field order


def test_json_without_schema_and_enum(client: genai.Client) -> None:
    free = client.models.generate_content(
        model=MODEL,
        contents="List three colors.",
        config=types.GenerateContentConfig(response_mime_type="application/json", temperature=0, max_output_tokens=300),
    )
    assert isinstance(json.loads(free.text), (dict, list))
    for seed in range(5):
        choice = client.models.generate_content(
            model=MODEL,
            contents="What kind of instrument is a drum?",
            config=types.GenerateContentConfig(
                response_mime_type="text/x.enum",
                response_schema={"type": "STRING", "enum": ["Percussion", "String", "Woodwind"]},
                temperature=1.0,
                seed=seed,
            ),
        )
        assert choice.text in ("Percussion", "String", "Woodwind")


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (
            {
                "response_mime_type": "application/json",
                "response_json_schema": {"type": "object", "patternProperties": {}},
            },
            "patternProperties",
        ),
        (
            {"response_mime_type": "application/json", "response_schema": {"type": "STRING", "format": "email"}},
            "format",
        ),
        (
            {"response_mime_type": "application/json", "response_json_schema": {"type": "array", "uniqueItems": True}},
            "uniqueItems",
        ),
        ({"response_schema": {"type": "STRING"}}, "responseMimeType"),
        ({"response_mime_type": "text/csv"}, "text/csv"),
    ],
)
def test_what_cannot_be_enforced_is_refused(client: genai.Client, config: dict, needle: str) -> None:
    with pytest.raises(genai_errors.ClientError) as refused:
        client.models.generate_content(model=MODEL, contents="x", config=types.GenerateContentConfig(**config))
    assert refused.value.code == 400 and needle in refused.value.message


def test_a_model_looping_inside_a_string_still_returns_valid_json(tmp_path) -> None:
    """SmolLM2 greedy, ``legs`` before ``name``, counts on inside the name string forever; unbounded
    strings are capped (``json_string_max_chars``), so the JSON still closes and validates."""
    from localgem.app import create_app
    from localgem.settings import load_settings
    from tests.conftest import API_KEY
    from tests.server import start_server

    settings = load_settings(environ={}, data_dir=tmp_path, api_keys=[API_KEY], json_string_max_chars=200)
    server = start_server(create_app(settings))
    try:
        client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
        schema = {
            "type": "OBJECT",
            "properties": {"name": {"type": "STRING"}, "legs": {"type": "INTEGER", "minimum": 0, "maximum": 8}},
            "required": ["name", "legs"],
            "propertyOrdering": ["legs", "name"],
        }
        config = types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=schema, temperature=0, max_output_tokens=1000
        )
        response = client.models.generate_content(model=MODEL, contents="Describe a cat.", config=config)
        assert response.candidates[0].finish_reason == types.FinishReason.STOP
        value = json.loads(response.text)
        assert 0 <= value["legs"] <= 8 and len(value["name"]) <= 200
    finally:
        server.stop()


#: Every kind of field Google's recorded "populate the following object" request has: nested and
#: nullable objects, anyOf, formats, enums, bounds, and arrays of strings without maxItems.
POPULATE = {
    "type": "object",
    "properties": {
        "fixes": {"type": "array", "items": {"type": "string"}},
        "title": {"type": "string", "minLength": 1, "maxLength": 10},
        "created": {"type": "string", "format": "date-time"},
        "kind": {"type": "string", "enum": ["bug", "feature"]},
        "score": {"type": "number", "minimum": 1, "maximum": 10},
        "count": {"type": "integer"},
        "owner": {"type": ["string", "null"]},
        "labels": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
        "inner": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "size": {"type": "number"}},
            "required": ["name", "size"],
            "additionalProperties": False,
        },
    },
    "required": ["fixes", "title", "created", "kind", "score", "count", "owner", "labels", "inner"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("budget", [70, 100, 160])
def test_json_cut_by_max_output_tokens_is_closed_validly(client: genai.Client, budget: int) -> None:
    """An output that would run past maxOutputTokens is closed within it by the shortest completion
    (strings closed, required properties added, brackets closed): it parses and validates, greedy or
    sampled, unary or streamed, and still says MAX_TOKENS."""
    closed = 0
    for temperature, seed in ((0.0, 0), (0.9, budget)):
        config = types.GenerateContentConfig(
            response_mime_type="application/json",
            response_json_schema=POPULATE,
            temperature=temperature,
            seed=seed,
            max_output_tokens=budget,
        )
        prompt = "populate the following object"
        unary = client.models.generate_content(model=MODEL, contents=prompt, config=config)
        jsonschema.validate(json.loads(unary.text), POPULATE)
        used = unary.usage_metadata.candidates_token_count
        assert used <= budget
        if unary.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS:
            closed += 1
        else:
            assert unary.candidates[0].finish_reason == types.FinishReason.STOP and used < budget
        chunks = list(client.models.generate_content_stream(model=MODEL, contents=prompt, config=config))
        assert "".join(chunk.text or "" for chunk in chunks) == unary.text
        assert chunks[-1].candidates[0].finish_reason == unary.candidates[0].finish_reason
    if budget == 70:
        assert closed == 2  # the model writes far more than 70 tokens for this object: both were closed


def test_function_arguments_cut_by_max_output_tokens_are_closed_validly(client: genai.Client) -> None:
    parameters = {
        "type": "object",
        "properties": {"fixes": {"type": "array", "items": {"type": "string"}}, "title": {"type": "string"}},
        "required": ["fixes", "title"],
    }
    config = types.GenerateContentConfig(
        tools=[
            types.Tool(
                function_declarations=[types.FunctionDeclaration(name="report", parameters_json_schema=parameters)]
            )
        ],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY")),
        temperature=0,
        max_output_tokens=40,
    )
    prompt = "Report every fix in the release notes: fix 1, fix 2, fix 3, fix 4, fix 5, fix 6, fix 7, fix 8, fix 9."
    response = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    [call] = response.function_calls
    assert call.name == "report"
    jsonschema.validate(call.args, parameters)
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert response.usage_metadata.candidates_token_count <= 40

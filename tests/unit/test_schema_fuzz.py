"""Random (mostly broken) schemas in responseSchema, responseJsonSchema and function declarations:
every one gets a 200 or a Google-shaped 4xx, never a 500."""

from __future__ import annotations

import json
import random

import httpx

from tests.conftest import API_KEY
from tests.server import RunningServer

ATOMS = [None, True, False, 0, -1, 1.5, "x", "", [], {}, [1], {"a": 1}, "STRING", "OBJECT", "object", "string"]
ATOMS += ["integer", "number", "array", "^a$", "[", "#/$defs/x", "date", "email", 10**30, -(10**30)]
JSON_KEYS = ["type", "properties", "required", "items", "minItems", "maxItems", "enum", "const", "anyOf", "oneOf"]
JSON_KEYS += ["allOf", "$ref", "$defs", "minLength", "maxLength", "pattern", "format", "minimum", "maximum"]
JSON_KEYS += ["exclusiveMinimum", "exclusiveMaximum", "additionalProperties", "nullable", "prefixItems", "description"]
GOOGLE_KEYS = ["type", "properties", "required", "items", "minItems", "maxItems", "enum", "anyOf", "minLength"]
GOOGLE_KEYS += ["maxLength", "pattern", "format", "minimum", "maximum", "propertyOrdering", "nullable", "title"]
GOOGLE_KEYS += ["minProperties", "maxProperties"]


def random_schema(rng: random.Random, keys: list[str], depth: int = 0):
    if depth > 3 or rng.random() < 0.3:
        return rng.choice(ATOMS)
    schema: dict = {}
    for _ in range(rng.randint(0, 4)):
        key = rng.choice(keys)
        if key in ("properties", "$defs"):
            schema[key] = {rng.choice("abc"): random_schema(rng, keys, depth + 1) for _ in range(rng.randint(0, 3))}
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            schema[key] = [random_schema(rng, keys, depth + 1) for _ in range(rng.randint(0, 3))]
        elif key in ("items", "additionalProperties"):
            schema[key] = random_schema(rng, keys, depth + 1)
        else:
            schema[key] = rng.choice(ATOMS)
    return schema


def test_random_schemas_never_cause_a_500(fake_server: RunningServer) -> None:
    rng = random.Random(7)
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=fake_server.url, headers={"x-goog-api-key": API_KEY}, timeout=60) as client:
        for _ in range(400):
            body: dict = {"contents": [{"parts": [{"text": "hi"}]}]}
            kind = rng.choice(["json", "google", "enum", "tool_json", "tool_google"])
            if kind == "json":
                body["generationConfig"] = {
                    "responseMimeType": "application/json",
                    "responseJsonSchema": random_schema(rng, JSON_KEYS),
                }
            elif kind in ("google", "enum"):
                mime = "application/json" if kind == "google" else "text/x.enum"
                body["generationConfig"] = {"responseMimeType": mime, "responseSchema": random_schema(rng, GOOGLE_KEYS)}
            elif kind == "tool_json":
                declaration = {"name": "f", "parametersJsonSchema": random_schema(rng, JSON_KEYS)}
                body["tools"] = [{"functionDeclarations": [declaration]}]
                body["toolConfig"] = {"functionCallingConfig": {"mode": rng.choice(["ANY", "AUTO", "VALIDATED"])}}
            else:
                body["tools"] = [
                    {"functionDeclarations": [{"name": "f", "parameters": random_schema(rng, GOOGLE_KEYS)}]}
                ]
            response = client.post(
                "/v1beta/models/gemini-2.0-flash:generateContent",
                content=json.dumps(body),
                headers={"content-type": "application/json"},
            )
            assert response.status_code < 500, (json.dumps(body), response.text)
            if response.status_code != 200:
                assert response.json()["error"]["status"] == "INVALID_ARGUMENT", response.text
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    assert statuses.get(200, 0) > 20 and statuses.get(400, 0) > 100  # both outcomes really happen

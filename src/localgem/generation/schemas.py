"""Response schemas and function parameters, engine-neutrally: Google's ``Schema`` (an OpenAPI 3.0
subset) → JSON Schema, and the checks every schema passes before any engine sees it.

A keyword outside the subset constrained decoding enforces is refused with ``UnenforceableSchema``
naming it: output is never presented as constrained when it was not. What one engine can enforce of
the rest is its own business (``Engine.check_constraint``; llama.cpp's grammars: ``engines.llama``).
"""

from __future__ import annotations

from typing import Any

from localgem.engines.base import UnenforceableSchema
from localgem.types.tools import Schema

_GOOGLE_TYPES = {
    "STRING": "string",
    "NUMBER": "number",
    "INTEGER": "integer",
    "BOOLEAN": "boolean",
    "ARRAY": "array",
    "OBJECT": "object",
    "NULL": "null",
}
_DOCUMENTATION = {"title", "description", "example", "examples", "default", "$schema", "$id", "$comment"}
_JSON_SCHEMA_KEYWORDS = {
    "type",
    "properties",
    "required",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "$defs",
    "definitions",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "additionalProperties",
    "propertyOrdering",
    "nullable",
} | _DOCUMENTATION
_STRING_FORMATS = {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
_NUMBER_FORMATS = {"float", "double", "int32", "int64"}
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_MAX_DIGITS = 15


# -- Google Schema → JSON Schema ------------------------------------------------------------------


def google_to_json_schema(schema: Schema, path: str) -> dict[str, Any]:
    """Google's Schema as JSON Schema; properties in ``propertyOrdering``, else alphabetical (as Google)."""
    out: dict[str, Any] = {}
    kind = _GOOGLE_TYPES.get(schema.type or "")
    if kind:
        out["type"] = kind
    if schema.format:
        if kind == "string" and schema.format == "enum":
            pass  # Google's marker for a string enum
        elif (kind == "string" and schema.format in _STRING_FORMATS) or (
            kind in ("number", "integer") and schema.format in _NUMBER_FORMATS
        ):
            if kind == "string":
                out["format"] = schema.format
        else:
            raise UnenforceableSchema(
                f"{path}.format", f"format {schema.format!r} on a {schema.type} cannot be enforced"
            )
    if schema.enum is not None:
        out["enum"] = [_enum_value(value, kind, f"{path}.enum") for value in schema.enum]
    if schema.properties is not None:
        order = schema.property_ordering or sorted(schema.properties)
        unknown = set(order) - set(schema.properties)
        if unknown or set(schema.properties) - set(order):
            raise UnenforceableSchema(
                f"{path}.property_ordering", "propertyOrdering must list exactly the properties of the object"
            )
        out["properties"] = {
            name: google_to_json_schema(schema.properties[name], f"{path}.properties.{name}") for name in order
        }
    if schema.required is not None:
        out["required"] = list(schema.required)
    if schema.items is not None:
        out["items"] = google_to_json_schema(schema.items, f"{path}.items")
    for field, key in (
        ("min_items", "minItems"),
        ("max_items", "maxItems"),
        ("min_length", "minLength"),
        ("max_length", "maxLength"),
        ("minimum", "minimum"),
        ("maximum", "maximum"),
        ("pattern", "pattern"),
    ):
        if (value := getattr(schema, field)) is not None:
            out[key] = value
    if schema.any_of is not None:
        out["anyOf"] = [google_to_json_schema(option, f"{path}.any_of[{i}]") for i, option in enumerate(schema.any_of)]
    _check_property_counts(schema, path)
    if schema.nullable:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _enum_value(value: str, kind: str | None, path: str) -> Any:
    if kind in ("integer", "number"):
        try:
            return int(value) if kind == "integer" else float(value)
        except ValueError:
            raise UnenforceableSchema(path, f"enum value {value!r} is not a {kind}") from None
    return value


def _check_property_counts(schema: Schema, path: str) -> None:
    """min/maxProperties hold by construction only when the required and declared properties decide them."""
    declared = len(schema.properties or {})
    required = len(schema.required or [])
    if schema.min_properties is not None and schema.min_properties > required:
        raise UnenforceableSchema(f"{path}.min_properties", "minProperties above the required properties")
    if schema.max_properties is not None and schema.max_properties < declared:
        raise UnenforceableSchema(f"{path}.max_properties", "maxProperties below the declared properties")


# -- JSON Schema checks ---------------------------------------------------------------------------


def check_json_schema(schema: Any, path: str) -> dict[str, Any]:
    """Every keyword must be one the grammar enforces (or documentation); returns the schema."""
    if isinstance(schema, bool):
        if schema:
            return {}
        raise UnenforceableSchema(path, "the schema false accepts nothing")
    if not isinstance(schema, dict):
        raise UnenforceableSchema(path, "a schema must be a JSON object")
    for key, value in schema.items():
        where = f"{path}.{key}"
        if key not in _JSON_SCHEMA_KEYWORDS:
            raise UnenforceableSchema(where, f"the keyword {key!r} cannot be enforced")
        _check_value(key, value, where)
        if key == "format" and value not in _STRING_FORMATS | _NUMBER_FORMATS:
            raise UnenforceableSchema(where, f"format {value!r} cannot be enforced")
        if key in ("properties", "$defs", "definitions"):
            if not isinstance(value, dict):
                raise UnenforceableSchema(where, f"{key} must be an object")
            for name, sub in value.items():
                check_json_schema(sub, f"{where}.{name}")
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            if not isinstance(value, list) or not value:
                raise UnenforceableSchema(where, f"{key} must be a non-empty list")
            for i, sub in enumerate(value):
                check_json_schema(sub, f"{where}[{i}]")
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            check_json_schema(value, where)
    if "oneOf" in schema:
        # A grammar cannot forbid matching two options at once: accept oneOf only where options are disjoint by type.
        kinds = [sub.get("type") for sub in schema["oneOf"] if isinstance(sub, dict)]
        if None in kinds or len(set(map(str, kinds))) != len(kinds):
            raise UnenforceableSchema(f"{path}.oneOf", "oneOf with options that may overlap cannot be enforced")
    return schema


#: Repetitions are spelled out in the grammar: beyond these, a schema is refused rather than compiled.
_MAX_ITEMS = 100
_MAX_LENGTH = 10_000
_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}


def _check_value(key: str, value: Any, where: str) -> None:
    """Keyword values of the wrong kind would make the converter fail (or blow up): refuse them by name."""
    problem = None
    if key in ("minItems", "maxItems", "minLength", "maxLength"):
        limit = _MAX_ITEMS if key.endswith("Items") else _MAX_LENGTH
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problem = f"{key} must be a non-negative integer"
        elif value > limit:
            problem = f"{key} {value} is above {limit}, the most this server enforces"
    elif key in _BOUNDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) >= 10**_MAX_DIGITS:
            problem = f"{key} must be a number with at most {_MAX_DIGITS} digits"
    elif key == "type":
        kinds = value if isinstance(value, list) else [value]
        if not kinds or not all(isinstance(kind, str) and kind in _TYPES for kind in kinds):
            problem = f"type must be one of {sorted(_TYPES)} (or a list of them)"
    elif key in ("required", "propertyOrdering"):
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            problem = f"{key} must be a list of property names"
    elif key == "enum":
        if not isinstance(value, list) or not value:
            problem = "enum must be a non-empty list"
    elif key in ("pattern", "$ref", "format"):
        if not isinstance(value, str):
            problem = f"{key} must be a string"
    elif key == "nullable":
        if not isinstance(value, bool):
            problem = "nullable must be true or false"
    elif key == "additionalProperties":
        if not isinstance(value, (bool, dict)):
            problem = "additionalProperties must be a boolean or a schema"
    elif key == "items":
        if not isinstance(value, (bool, dict)):
            problem = "items must be a schema"
    if problem:
        raise UnenforceableSchema(where, problem)

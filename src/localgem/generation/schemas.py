"""Response schemas → GBNF grammars for constrained decoding.

Google's ``Schema`` (an OpenAPI 3.0 subset) is first turned into JSON Schema; JSON Schema (from
``responseJsonSchema`` or the conversion) is turned into GBNF by llama.cpp's converter (shipped with
llama-cpp-python), extended here with bounds on integers and numbers. A keyword that the grammar
cannot enforce is refused with ``UnenforceableSchema`` naming it: output is never presented as
constrained when it was not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, RESERVED_NAMES, SchemaConverter

from localgem.types.tools import Schema


class UnenforceableSchema(ValueError):
    """A schema keyword (or value) that decoding cannot enforce; ``path`` names where it is."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


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


# -- JSON Schema → GBNF ---------------------------------------------------------------------------


def new_converter() -> SchemaConverter:
    """llama.cpp's JSON Schema → GBNF converter, with the numeric bounds added here."""
    return _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


@dataclass(frozen=True)
class JsonLimits:
    """Bounds for what a schema leaves unbounded (0: unbounded), so that a model looping inside a string,
    an array or an open object still ends, with valid JSON."""

    string_chars: int = 0
    items: int = 0


UNBOUNDED = JsonLimits()


#: JSON forbids raw control characters in strings (llama-cpp-python's converter lets them through).
_JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_PATTERN_DOT = r'[^"\\\x7F\x00-\x1F]'  # ``.`` in a pattern: any character a JSON string holds unescaped


def finish(converter: SchemaConverter, limits: JsonLimits) -> str:
    """The grammar's text, with ``limits`` applied to the strings, arrays and open objects that the schema
    leaves unbounded (schemas' arrays are bounded before conversion: see ``bounded_arrays``)."""
    rules = converter._rules
    strings = f"{{0,{limits.string_chars}}}" if limits.string_chars else "*"
    items = f"{{0,{limits.items - 1}}}" if limits.items else "*"
    for name, rule in list(rules.items()):
        if rule == PRIMITIVE_RULES["string"].content:
            rules[name] = f'"\\"" char{strings} "\\"" space'
        elif rule == PRIMITIVE_RULES["char"].content:
            rules[name] = _JSON_CHAR
        elif name == "dot":
            rules[name] = _PATTERN_DOT
        elif rule == PRIMITIVE_RULES["array"].content:
            rules[name] = f'"[" space ( value ("," space value){items} )? "]" space'
        elif rule == PRIMITIVE_RULES["object"].content:
            rules[name] = f'"{{" space ( string ":" space value ("," space string ":" space value){items} )? "}}" space'
        elif name.endswith("additional-kvs") and rule.endswith(" )*"):
            rules[name] = rule[: -len("*")] + items
    return converter.format_grammar()


def bounded_arrays(schema: Any, items: int) -> Any:
    """``schema`` with ``maxItems: items`` on every array that sets none (0: unchanged)."""
    if not items:
        return schema
    if isinstance(schema, list):
        return [bounded_arrays(option, items) for option in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    kinds = schema.get("type")
    is_array = kinds == "array" or (isinstance(kinds, list) and "array" in kinds) or "items" in schema
    if is_array and "maxItems" not in schema:
        minimum = schema.get("minItems")
        out["maxItems"] = max(items, minimum if isinstance(minimum, int) else 0)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            out[key] = bounded_arrays(schema[key], items)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(schema.get(key), list):
            out[key] = bounded_arrays(schema[key], items)
    for key in ("properties", "$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            out[key] = {name: bounded_arrays(sub, items) for name, sub in schema[key].items()}
    return out


def json_schema_grammar(schema: dict[str, Any], path: str, limits: JsonLimits = UNBOUNDED) -> str:
    converter = new_converter()
    try:
        resolved = converter.resolve_refs(bounded_arrays(json.loads(json.dumps(schema)), limits.items), "input")
        converter.visit(anchored_patterns(resolved), "")
    except UnenforceableSchema:
        raise
    except (AssertionError, KeyError, ValueError, TypeError, RecursionError) as exc:
        raise UnenforceableSchema(path, f"the schema cannot be turned into a grammar: {exc}") from None
    return finish(converter, limits)


def any_json_grammar(limits: JsonLimits = UNBOUNDED) -> str:
    """``application/json`` without a schema: one JSON object or array."""
    converter = new_converter()
    converter.visit({"anyOf": [{"type": "object"}, {"type": "array"}]}, "")
    return finish(converter, limits)


def enum_grammar(values: list[str]) -> str:
    """``text/x.enum``: exactly one of the values, as plain text."""
    return "root ::= " + " | ".join(json.dumps(value, ensure_ascii=False) for value in values)


def anchored_patterns(schema: Any) -> Any:
    if isinstance(schema, dict):
        fixed = {key: anchored_patterns(value) for key, value in schema.items()}
        pattern = fixed.get("pattern")
        if isinstance(pattern, str):
            fixed["pattern"] = (
                ("" if pattern.startswith("^") else "^") + pattern + ("" if pattern.endswith("$") else "$")
            )
        return fixed
    if isinstance(schema, list):
        return [anchored_patterns(value) for value in schema]
    return schema


class _Converter(SchemaConverter):
    """llama.cpp's converter, plus ``minimum``/``maximum`` (inclusive or exclusive) on numbers; a schema
    with nothing but documentation (or nothing) accepts any JSON value."""

    def visit(self, schema: Any, name: str) -> str:
        if isinstance(schema, dict) and not set(schema) - _DOCUMENTATION:
            rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
            return self._add_rule(rule_name, self._add_primitive("value", PRIMITIVE_RULES["value"]))
        if (
            isinstance(schema, dict)
            and schema.get("type") in ("integer", "number")
            and any(b in schema for b in _BOUNDS)
        ):
            rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
            low, high = _bounds(schema, name or "root")
            body = _integer_rule(low, high) if schema["type"] == "integer" else _number_rule(low, high)
            return self._add_rule(rule_name, f"({body}) space")
        return super().visit(schema, name)


def _bounds(schema: dict[str, Any], name: str) -> tuple[int | None, int | None]:
    integer = schema["type"] == "integer"
    low = schema.get("minimum")
    high = schema.get("maximum")
    for key, value, shift in (
        ("exclusiveMinimum", schema.get("exclusiveMinimum"), 1),
        ("exclusiveMaximum", schema.get("exclusiveMaximum"), -1),
    ):
        if value is None or isinstance(value, bool):
            continue
        if not integer:
            raise UnenforceableSchema(name, f"{key} on a number cannot be enforced (use minimum/maximum)")
        bound = _whole(value, key, name, integer=True, round_up=shift > 0)
        if shift > 0:
            low = bound + 1 if bound == value else bound
        else:
            high = bound - 1 if bound == value else bound
    low = None if low is None else _whole(low, "minimum", name, integer, round_up=True)
    high = None if high is None else _whole(high, "maximum", name, integer, round_up=False)
    if low is not None and high is not None and low > high:
        raise UnenforceableSchema(name, f"minimum {low} is above maximum {high}: no value fits")
    for bound in (low, high):
        if bound is not None and len(str(abs(bound))) > _MAX_DIGITS:
            raise UnenforceableSchema(name, f"bound {bound} has more than {_MAX_DIGITS} digits")
    return low, high


def _whole(value: Any, key: str, name: str, integer: bool, round_up: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnenforceableSchema(name, f"{key} must be a number")
    if float(value).is_integer():
        return int(value)
    if integer:  # an integer ≥ 2.5 is an integer ≥ 3
        return int(value // 1) + 1 if round_up else int(value // 1)
    raise UnenforceableSchema(name, f"{key} {value} on a number: only whole-number bounds can be enforced")


_FRACTION = '"." [0-9]{1,15}'
_ZERO_FRACTION = '"." "0"{1,15}'


def _integer_rule(low: int | None, high: int | None) -> str:
    options = []
    if high is None or high >= 0:
        options.append(_digits_between(max(low, 0) if low is not None else 0, high))
    if low is None or low < 0:
        smallest = -high if high is not None and high < 0 else 1
        options.append(f'"-" ({_digits_between(smallest, -low if low is not None else None)})')
    return " | ".join(f"({option})" for option in options)


def _number_rule(low: int | None, high: int | None) -> str:
    """Whole-number bounds on a decimal: the integer part decides, but at an inclusive end the fraction must be zero."""
    options = []
    if high is None or high >= 0:
        options += _decimals("", max(low, 0) if low is not None else 0, high)
    if low is None or low < 0:
        options += _decimals('"-" ', -high if high is not None and high < 0 else 0, -low if low is not None else None)
    return " | ".join(f"({option})" for option in options)


def _decimals(sign: str, start: int, end: int | None) -> list[str]:
    """Decimals whose magnitude is in [start, end]: any fraction below ``end``, only zeros at ``end``."""
    if end is None:
        return [f"{sign}({_digits_between(start, None)}) ({_FRACTION})?"]
    options = [f"{sign}({_digits_between(start, end - 1)}) ({_FRACTION})?"] if start <= end - 1 else []
    return [*options, f'{sign}"{end}" ({_ZERO_FRACTION})?']


def _digits_between(low: int, high: int | None) -> str:
    """GBNF for the decimal integers in [low, high] (no leading zeros); ``high=None``: up to 16 digits."""
    options: list[str] = []
    shortest = len(str(low))
    longest = len(str(high)) if high is not None else shortest
    for length in range(shortest, longest + 1):
        first = max(low, 10 ** (length - 1) if length > 1 else 0)
        last = min(high if high is not None else 10**length - 1, 10**length - 1)
        if first <= last:
            options += _same_length(str(first), str(last))
    if high is None and shortest <= _MAX_DIGITS:  # every longer number
        options.append(f"[1-9] [0-9]{{{shortest},{_MAX_DIGITS}}}")
    return " | ".join(options)


def _same_length(low: str, high: str) -> list[str]:
    """Numbers of one length in [low, high], digit by digit (as regex range generators do)."""
    if len(low) == 1:
        return [f"[{low}-{high}]"]
    if low[0] == high[0]:
        return [f'"{low[0]}" ({" | ".join(_same_length(low[1:], high[1:]))})']
    tail = len(low) - 1
    options = []
    first, last = int(low[0]), int(high[0])
    if low[1:] != "0" * tail:
        options.append(f'"{low[0]}" ({" | ".join(_same_length(low[1:], "9" * tail))})')
        first += 1
    closing = None
    if high[1:] != "9" * tail:
        closing = f'"{high[0]}" ({" | ".join(_same_length("0" * tail, high[1:]))})'
        last -= 1
    if first <= last:
        options.append(f"[{first}-{last}]" + " [0-9]" * tail)
    if closing:
        options.append(closing)
    return options

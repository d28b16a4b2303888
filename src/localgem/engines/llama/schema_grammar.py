"""JSON Schema → GBNF, for llama.cpp's grammar sampler.

llama.cpp's converter (shipped with llama-cpp-python) does the work, extended here with bounds on
integers and numbers, caps on what a schema leaves unbounded (``JsonLimits``), and JSON's rule that
strings hold no raw control characters. What the converter cannot turn into a grammar is refused
with ``UnenforceableSchema``: output is never presented as constrained when it was not.

Importing this module loads libllama (llama-cpp-python's package does on import); ``constraints``
imports it only when it first builds a grammar.
"""

from __future__ import annotations

import json
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, RESERVED_NAMES, SchemaConverter

from localgem.engines.base import UNBOUNDED, JsonLimits, ToolCalls, UnenforceableSchema, anchored_patterns

_DOCUMENTATION = {"title", "description", "example", "examples", "default", "$schema", "$id", "$comment"}
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_MAX_DIGITS = 15


def new_converter() -> SchemaConverter:
    """llama.cpp's JSON Schema → GBNF converter, with the numeric bounds added here."""
    return _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


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


def json_schema_grammar(schema: dict[str, Any], path: str | None = None, limits: JsonLimits = UNBOUNDED) -> str:
    """``path``: where a refusal that names no place in the schema is reported (None: the schema as a whole)."""
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


def choice_grammar(values: tuple[str, ...] | list[str]) -> str:
    """Exactly one of the values, as plain text."""
    return "root ::= " + " | ".join(json.dumps(value, ensure_ascii=False) for value in values)


def tool_calls_grammar(calls: ToolCalls, *, after_trigger: bool = False) -> str:
    """GBNF for one to ``max_calls`` call blocks, each naming one of the functions with valid arguments.
    ``after_trigger``: for a lazy grammar, which starts once the output has written the open tag."""
    converter = new_converter()
    call = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": f.name}, calls.args_key: f.parameters},
                "required": ["name", calls.args_key],
            }
            for f in calls.functions
        ]
    }
    call = anchored_patterns(json.loads(json.dumps(call)))
    converter.visit(converter.resolve_refs(bounded_arrays(call, calls.limits.items), "input"), "call")
    body = f'"\\n"? call "{calls.close_tag}"'
    block = f'"{calls.open_tag}" {body}'
    first = body if after_trigger else block
    # A newline may follow the last block: without it, a model that writes one would be forced to call again.
    repeat = f'("\\n"? {block}){{0,{calls.max_calls - 1}}} "\\n"?'
    return finish(converter, calls.limits) + f"\nroot ::= {first} {repeat}\n"


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

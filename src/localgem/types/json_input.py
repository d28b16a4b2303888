"""Decoding JSON from clients: whatever the body holds is a value or a 400, never an exception.

Beyond Python's own parser: invalid UTF-8, NaN/Infinity, numbers beyond a double, duplicate keys,
lone surrogates (``"\\ud800"``, which no UTF-8 encoder can write back) and nesting deeper than
protobuf's limit are all refused, so nothing later trips over them.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

from localgem import errors

#: protobuf's default recursion limit; every level of JSON nesting counts.
MAX_DEPTH = 100
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_PREFIX = "Invalid JSON payload received."
_CONTAINERS = (dict, list)


class _Refused(ValueError):
    """A value the JSON syntax allows but the API does not."""


def decode_json(body: bytes | str, *, single_quotes: bool = False) -> Any:
    """The JSON value in ``body``; ``single_quotes`` also takes Python-style quoting (see below)."""
    text = _text(body)
    try:
        value = json.loads(
            text, parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_object_without_duplicates
        )
    except RecursionError:
        raise _too_deep() from None
    except _Refused as exc:
        raise errors.InvalidArgument(f"{_PREFIX} {exc}") from None
    except ValueError as exc:
        value = _single_quoted(text) if single_quotes else None
        if value is None:
            raise errors.InvalidArgument(f"{_PREFIX} {exc}") from None
    if text.count("[") + text.count("{") > MAX_DEPTH and _nested_too_deep(value):
        raise _too_deep()
    if _SURROGATE_ESCAPE.search(text):
        _check_strings(value)
    return value


def _text(body: bytes | str) -> str:
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise errors.InvalidArgument(f"{_PREFIX} The body is not valid UTF-8 (byte {exc.start}).") from None


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a valid JSON value.")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _Refused(f"The number {literal[:40]} is out of range.")
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f'Duplicate field "{key[:100]}".')
            seen.add(key)
    return value


def _too_deep() -> errors.InvalidArgument:
    return errors.InvalidArgument(f"{_PREFIX} The JSON is nested more than {MAX_DEPTH} levels deep.")


def _nested_too_deep(value: Any) -> bool:
    """Whether containers nest more than MAX_DEPTH deep: level by level, without recursion, and
    looking only at containers (a small fraction of what validating the body costs)."""
    if type(value) not in _CONTAINERS:
        return False
    level = [value]
    for _ in range(MAX_DEPTH):
        deeper: list[Any] = []
        for item in level:
            deeper += [child for child in (item.values() if type(item) is dict else item) if type(child) in _CONTAINERS]
        if not deeper:
            return False
        level = deeper
    return True


def _check_strings(value: Any) -> None:
    """Every string and key is Unicode text (no lone surrogate); only run when the text has a surrogate escape."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            for key in item:
                _check_string(key)
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is str:
            _check_string(item)


def _check_string(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise errors.InvalidArgument(
            f"{_PREFIX} A string holds a lone surrogate (\\u{ord(text[exc.start]):04x}), which is not Unicode text."
        ) from None


def _single_quoted(text: str) -> dict[str, Any] | None:
    """Google's JSON parser also takes single-quoted strings, and its own curl samples rely on it
    (the Files upload sample sends ``{'file': {'display_name': '...'}}``)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return None
    return value if isinstance(value, dict) and _json_like(value) else None


def _json_like(value: Any, depth: int = 1) -> bool:
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_like(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_like(v, depth + 1) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int)

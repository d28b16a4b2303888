"""The Semantic Retriever's ``metadataFilters`` (``corpora:query``, ``documents:query``): a list of
``MetadataFilter`` (a key and conditions on it), as the same filter tree the AIP-160 strings become.

Conditions of one filter are ORed, filters ANDed (retriever.proto). ``LESS`` … ``GREATER`` take
numbers; ``EQUAL`` and ``NOT_EQUAL`` numbers or strings; ``INCLUDES`` and ``EXCLUDES`` strings, held
or not by a string-list value. Keys are ``document.custom_metadata.<key>`` or
``chunk.custom_metadata.<key>`` (a plain key is taken too).
"""

from __future__ import annotations

from localgem import errors
from localgem.retrieval.metadata_filter import All, Any, Comparison, Filter, Not
from localgem.types.wire import WireModel, wire_enum

_OPERATORS = [
    "OPERATOR_UNSPECIFIED",
    "LESS",
    "LESS_EQUAL",
    "EQUAL",
    "GREATER_EQUAL",
    "GREATER",
    "NOT_EQUAL",
    "INCLUDES",
    "EXCLUDES",
]
Operator = wire_enum("Operator", _OPERATORS, {name: n for n, name in enumerate(_OPERATORS)})
_COMPARATORS = {"LESS": "<", "LESS_EQUAL": "<=", "EQUAL": "=", "GREATER_EQUAL": ">=", "GREATER": ">", "NOT_EQUAL": "!="}
_NUMERIC_ONLY = {"LESS", "LESS_EQUAL", "GREATER_EQUAL", "GREATER"}
_KEY_PREFIXES = ("document.custom_metadata.", "chunk.custom_metadata.")


class Condition(WireModel):
    string_value: str | None = None
    numeric_value: float | None = None
    operation: Operator | None = None


class MetadataFilter(WireModel):
    key: str | None = None
    conditions: list[Condition] | None = None


def to_filter(filters: list[MetadataFilter] | None, field: str = "metadata_filters") -> Filter | None:
    """The filter tree ``filters`` say (None: no filter), or a 400 naming the bad field."""
    if not filters:
        return None
    keys = [_filter(f, f"{field}[{i}]") for i, f in enumerate(filters)]
    return keys[0] if len(keys) == 1 else All(tuple(keys))


def _filter(metadata_filter: MetadataFilter, where: str) -> Filter:
    key = (metadata_filter.key or "").strip()
    if not key:
        raise errors.invalid_field(f"{where}.key", f"{where}.key is required.")
    for prefix in _KEY_PREFIXES:
        key = key.removeprefix(prefix)
    if not key or "." in key:
        raise errors.invalid_field(
            f"{where}.key",
            f"{where}.key {metadata_filter.key!r} must name a custom metadata key: "
            "document.custom_metadata.<key> or chunk.custom_metadata.<key>.",
        )
    conditions = metadata_filter.conditions or []
    if not conditions:
        raise errors.invalid_field(f"{where}.conditions", f"{where}.conditions needs at least one condition.")
    terms = [_condition(key, c, f"{where}.conditions[{j}]") for j, c in enumerate(conditions)]
    return terms[0] if len(terms) == 1 else Any(tuple(terms))


def _condition(key: str, condition: Condition, where: str) -> Filter:
    operation = condition.operation or "OPERATOR_UNSPECIFIED"
    if operation == "OPERATOR_UNSPECIFIED":
        raise errors.invalid_field(f"{where}.operation", f"{where}.operation is required.")
    if (condition.string_value is None) == (condition.numeric_value is None):
        raise errors.invalid_field(where, f"{where} needs exactly one of stringValue and numericValue.")
    if condition.string_value is not None:
        if operation in _NUMERIC_ONLY:
            raise errors.invalid_field(f"{where}.operation", f"{where}: {operation} compares numbers, not strings.")
        value: str | float = condition.string_value
    else:
        if operation in ("INCLUDES", "EXCLUDES"):
            raise errors.invalid_field(
                f"{where}.operation", f"{where}: {operation} asks whether a string list holds a string."
            )
        value = float(condition.numeric_value)  # type: ignore[arg-type]
    quoted = isinstance(value, str)
    if operation == "INCLUDES":
        return Comparison(key, ":", value, quoted)
    if operation == "EXCLUDES":
        return Not(Comparison(key, ":", value, quoted))
    return Comparison(key, _COMPARATORS[operation], value, quoted)

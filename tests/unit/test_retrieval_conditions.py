"""The Semantic Retriever's metadataFilters become the same filter tree as AIP-160 strings."""

from __future__ import annotations

import pytest

from localgem import errors
from localgem.retrieval.conditions import MetadataFilter, to_filter
from localgem.retrieval.metadata_filter import matches

BOOK = {"genre": "drama", "year": 1929, "tags": ["war", "memoir"]}


def filters(*raw: dict) -> list[MetadataFilter]:
    return [MetadataFilter.model_validate(f) for f in raw]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            [{"key": "document.custom_metadata.genre", "conditions": [{"stringValue": "drama", "operation": "EQUAL"}]}],
            True,
        ),
        (
            [
                {
                    "key": "genre",
                    "conditions": [
                        {"stringValue": "action", "operation": "EQUAL"},
                        {"stringValue": "drama", "operation": "EQUAL"},
                    ],
                }
            ],
            True,
        ),  # conditions of one key: OR
        (
            [
                {"key": "chunk.custom_metadata.year", "conditions": [{"numericValue": 1920, "operation": "GREATER"}]},
                {"key": "chunk.custom_metadata.year", "conditions": [{"numeric_value": 1930, "operation": 1}]},
            ],
            True,
        ),  # filters: AND (a numeric range), snake_case and enum numbers accepted
        ([{"key": "year", "conditions": [{"numericValue": 1930, "operation": "GREATER_EQUAL"}]}], False),
        ([{"key": "tags", "conditions": [{"stringValue": "war", "operation": "INCLUDES"}]}], True),
        ([{"key": "tags", "conditions": [{"stringValue": "war", "operation": "EXCLUDES"}]}], False),
        ([{"key": "genre", "conditions": [{"stringValue": "drama", "operation": "NOT_EQUAL"}]}], False),
        ([{"key": "year", "conditions": [{"stringValue": "1929", "operation": "EQUAL"}]}], False),  # types differ
    ],
)
def test_conditions_filter_as_google_describes(raw: list[dict], expected: bool) -> None:
    assert matches(to_filter(filters(*raw)), BOOK) is expected


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"conditions": [{"stringValue": "x", "operation": "EQUAL"}]}, "metadata_filters[0].key"),
        ({"key": "document.custom_metadata.", "conditions": [{"stringValue": "x", "operation": "EQUAL"}]}, ".key"),
        ({"key": "genre"}, "metadata_filters[0].conditions"),
        ({"key": "genre", "conditions": [{"stringValue": "x"}]}, "conditions[0].operation"),
        ({"key": "genre", "conditions": [{"operation": "EQUAL"}]}, "conditions[0]"),
        ({"key": "genre", "conditions": [{"stringValue": "x", "operation": "LESS"}]}, "conditions[0].operation"),
        ({"key": "tags", "conditions": [{"numericValue": 1, "operation": "INCLUDES"}]}, "conditions[0].operation"),
    ],
)
def test_bad_filters_are_400s_naming_the_field(raw: dict, field: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        to_filter(filters(raw))
    assert field in str(caught.value.details)


def test_no_filters_filter_nothing() -> None:
    assert to_filter(None) is None and to_filter([]) is None

"""``customMetadata`` of documents and chunks: the wire form, and the key → value map filters read."""

from __future__ import annotations

import json

from localgem import errors
from localgem.retrieval.metadata_filter import Metadata
from localgem.types.wire import WireModel

#: Google's limit on custom metadata entries per document (and per chunk).
MAX_CUSTOM_METADATA = 20


class StringList(WireModel):
    values: list[str] | None = None


class CustomMetadata(WireModel):
    key: str | None = None
    string_value: str | None = None
    numeric_value: float | None = None
    string_list_value: StringList | None = None


def metadata(entries: list[CustomMetadata] | None, where: str = "custom_metadata") -> Metadata:
    """A document's custom metadata as filters read it, or a 400 naming the bad entry."""
    entries = entries or []
    if len(entries) > MAX_CUSTOM_METADATA:
        raise errors.invalid_field(where, f"A document may have at most {MAX_CUSTOM_METADATA} custom metadata entries.")
    found: dict[str, str | float | list[str]] = {}
    for i, entry in enumerate(entries):
        field = f"{where}[{i}]"
        if not entry.key:
            raise errors.invalid_field(f"{field}.key", f"{field}.key is required.")
        values = [
            v
            for v in (
                entry.string_value,
                entry.numeric_value,
                entry.string_list_value.values or [] if entry.string_list_value is not None else None,
            )
            if v is not None
        ]
        if len(values) != 1:
            raise errors.invalid_field(
                field, f"{field} needs exactly one of string_value, numeric_value or string_list_value."
            )
        if entry.key in found:
            raise errors.invalid_field(f"{field}.key", f"The custom metadata key {entry.key!r} is given twice.")
        found[entry.key] = values[0]
    return found


def stored(entries: list[CustomMetadata] | None) -> str | None:
    """Entries as a row keeps them (JSON, as the client sent them)."""
    return json.dumps([m.to_wire() for m in entries]) if entries else None


def loaded(raw: str | None) -> list[CustomMetadata] | None:
    return [CustomMetadata.model_validate(e) for e in json.loads(raw)] if raw else None

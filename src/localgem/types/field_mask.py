"""Update masks (``updateMask``): which fields of a resource a PATCH changes, as Google's
``google.protobuf.FieldMask`` names them (lowerCamelCase or snake_case, comma-separated)."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from localgem import errors


def update_paths(update_mask: str | None, body: BaseModel, updatable: Iterable[str], refusal: str) -> set[str]:
    """The snake_case fields to update: the mask's paths, or without a mask the fields the body sets
    (other than ``name``). Raises INVALID_ARGUMENT (``refusal``) if none is given or one is not updatable."""
    allowed = set(updatable)
    if update_mask:
        by_name = {name: name for name in allowed} | {to_camel(name): name for name in allowed}
        paths = {by_name.get(p.strip(), p.strip()) for p in update_mask.split(",") if p.strip()}
    else:
        paths = {f for f in body.model_fields_set if getattr(body, f) is not None and f != "name"}
    if not paths or not paths <= allowed:
        raise errors.invalid_field("update_mask", refusal)
    return paths

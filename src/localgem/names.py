"""Resource ids: generated ones, and the rules a user-supplied id must follow (Google's)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from localgem import errors

#: Google's rule for user-chosen ids: lowercase letters, digits and dashes, no dash at either end.
RESOURCE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_id(length: int = 12) -> str:
    """A random id of ``[a-z0-9]`` only: google-genai extracts file ids from URIs with ``[a-z0-9]+``."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def is_resource_id(value: str) -> bool:
    return RESOURCE_ID.fullmatch(value) is not None


def resource_id(name: str, collection: str, *, field: str = "name") -> str:
    """The id in ``collection/id`` (or a bare ``id``), or a 400 naming the field."""
    value = name.removeprefix(f"{collection}/")
    if not is_resource_id(value):
        raise errors.invalid_field(
            field,
            f"{field}: {_singular(collection)} name may only contain lowercase alphanumeric "
            "characters or dashes (-) and cannot begin or end with a dash.",
        )
    return value


def lookup_id(value: str, collection: str, not_found: Callable[[str], errors.ApiError] | None = None) -> str:
    """The id of a resource named in a URL path; anything that cannot be an id is simply not found
    (``not_found(value)``: the resource's own answer for that, where it is not a plain 404)."""
    value = value.removeprefix(f"{collection}/")
    if not is_resource_id(value):
        if not_found is not None:
            raise not_found(value)
        raise errors.NotFound(f"{_singular(collection)} {collection}/{value} not found.")
    return value


def _singular(collection: str) -> str:
    """``files`` → ``File``, ``batches`` → ``Batch``."""
    stem = collection[:-2] if collection.endswith(("ches", "shes", "sses")) else collection.removesuffix("s")
    return stem[:1].upper() + stem[1:]

"""Resource ids: generated ones, and the rules a user-supplied id must follow (Google's)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from localgem import errors

#: Google's rule for user-chosen ids: lowercase letters, digits and dashes, no dash at either end.
RESOURCE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
#: A slug's length: with "-" and 12 random characters, an id stays within Google's 40.
_SLUG_LENGTH = 27


def new_id(length: int = 12) -> str:
    """A random id of ``[a-z0-9]`` only: google-genai extracts file ids from URIs with ``[a-z0-9]+``."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def id_from(display_name: str | None) -> str:
    """An id as Google derives one from a display name: its slug, then a random suffix
    (``My docs`` → ``my-docs-a1b2c3d4e5f6``); without a usable name, the random part alone."""
    slug = _NOT_SLUG.sub("-", (display_name or "").lower()).strip("-")[:_SLUG_LENGTH].strip("-")
    return f"{slug}-{new_id()}" if slug else new_id()


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

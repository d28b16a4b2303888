"""List paging with opaque page tokens, as every Google list method has."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TypeVar

from localgem import errors

T = TypeVar("T")


def paginate(
    items: Sequence[T], page_size: int | None, page_token: str | None, *, default_size: int, max_size: int
) -> tuple[list[T], str | None]:
    if page_size is None or page_size == 0:
        page_size = default_size
    if page_size < 0:
        raise errors.invalid_field("page_size", "page_size must not be negative.")
    page_size = min(page_size, max_size)
    start = _offset(page_token) if page_token else 0
    end = start + page_size
    next_token = base64.urlsafe_b64encode(f"offset:{end}".encode()).decode() if end < len(items) else None
    return list(items[start:end]), next_token


def _offset(token: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind == "offset" and value.isdigit():
            return int(value)
    except (ValueError, UnicodeDecodeError):
        pass
    raise errors.invalid_field("page_token", "Invalid page_token.")

"""List paging with opaque page tokens, as every Google list method has.

One page-size rule and one token encoding serve both kinds of list: offset paging over a sequence held
in memory (``paginate``) and keyset paging over a repository that resumes after the last row it returned
(``keyset_page``). A token is URL-safe base64 of ``kind:position``; clients only hand it back.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from localgem import errors

T = TypeVar("T")

_OFFSET = "offset"
_AFTER = "after"


def resolve_page_size(page_size: int | None, *, default_size: int, max_size: int) -> int:
    """How many items a page holds: unset or 0 means the default, more than the maximum means the maximum."""
    if page_size is not None and page_size < 0:
        raise errors.invalid_field("page_size", "page_size must not be negative.")
    return min(page_size or default_size, max_size)


def encode_token(kind: str, position: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode().rstrip("=")


def decode_token(token: str, kind: str) -> str:
    """The position a token of ``kind`` holds; any other token is Google's 400 for ``page_token``."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise invalid_token() from None
    found, separator, position = raw.partition(":")
    if found != kind or not separator:
        raise invalid_token()
    return position


def invalid_token() -> errors.InvalidArgument:
    return errors.invalid_field("page_token", "Invalid page_token.")


def paginate(
    items: Sequence[T], page_size: int | None, page_token: str | None, *, default_size: int, max_size: int
) -> tuple[list[T], str | None]:
    """A page of ``items`` by offset (lists small enough to hold in memory)."""
    size = resolve_page_size(page_size, default_size=default_size, max_size=max_size)
    start = _offset(page_token) if page_token else 0
    end = start + size
    next_token = encode_token(_OFFSET, str(end)) if end < len(items) else None
    return list(items[start:end]), next_token


def _offset(token: str) -> int:
    value = decode_token(token, _OFFSET)
    if not (value.isascii() and value.isdigit()):
        raise invalid_token()
    return int(value)


async def keyset_page(
    fetch: Callable[[int, str | None], Awaitable[Sequence[T]]],
    page_size: int | None,
    page_token: str | None,
    *,
    default_size: int,
    max_size: int,
    position: Callable[[T], str],
) -> tuple[list[T], str | None]:
    """A page read from a store in a stable order: ``fetch(limit, after)`` returns up to ``limit`` rows
    following the position ``after`` (None: from the start); ``position(row)`` is where a row stands.

    One row more than the page is fetched, so that a next token is given only when there is more."""
    size = resolve_page_size(page_size, default_size=default_size, max_size=max_size)
    after = decode_token(page_token, _AFTER) if page_token else None
    rows = list(await fetch(size + 1, after))
    if len(rows) <= size:
        return rows, None
    return rows[:size], encode_token(_AFTER, position(rows[size - 1]))

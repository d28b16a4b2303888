from __future__ import annotations

import stat
from pathlib import Path

import pytest

from localgem import errors
from localgem.auth.keys import ApiKeys, configured_keys, digest, stored_key
from localgem.types.paging import decode_token, encode_token, keyset_page, paginate, resolve_page_size


def test_pages_walk_the_whole_list() -> None:
    items, token, seen = list(range(7)), None, []
    while True:
        page, token = paginate(items, 3, token, default_size=50, max_size=1000)
        seen += page
        if token is None:
            break
    assert seen == items


def test_bad_page_token_and_size() -> None:
    with pytest.raises(errors.InvalidArgument, match="page_token"):
        paginate([1], 1, "garbage!", default_size=50, max_size=1000)
    with pytest.raises(errors.InvalidArgument, match="page_size"):
        paginate([1], -1, None, default_size=50, max_size=1000)


def test_one_page_size_rule_for_every_list() -> None:
    for requested, expected in ((None, 50), (0, 50), (1, 1), (999, 999), (1000, 1000), (5000, 1000)):
        assert resolve_page_size(requested, default_size=50, max_size=1000) == expected
    assert resolve_page_size(None, default_size=10, max_size=100) == 10  # files
    assert resolve_page_size(101, default_size=10, max_size=100) == 100
    assert len(paginate(list(range(2000)), 5000, None, default_size=50, max_size=1000)[0]) == 1000
    assert len(paginate(list(range(2000)), 0, None, default_size=50, max_size=1000)[0]) == 50


def test_tokens_are_opaque_and_of_one_kind() -> None:
    token = encode_token("after", "2026-01-01T00:00:00+00:00|f1")
    assert "after" not in token and "=" not in token  # URL-safe base64, no padding to escape
    assert decode_token(token, "after") == "2026-01-01T00:00:00+00:00|f1"
    _, offset_token = paginate([1, 2, 3], 1, None, default_size=50, max_size=1000)
    assert offset_token is not None
    for wrong in (offset_token, "", "garbage!", encode_token("after", "x")[:-2] + "\u00e9"):
        with pytest.raises(errors.InvalidArgument, match="page_token"):
            decode_token(wrong, "after")
    with pytest.raises(errors.InvalidArgument, match="page_token"):
        paginate([1], 1, encode_token("offset", "\u00b2"), default_size=50, max_size=1000)  # a digit, not ASCII


class Rows:
    """A store read in a stable order (descending numbers), resuming after a position."""

    def __init__(self, count: int) -> None:
        self.rows = list(range(count, 0, -1))
        self.limits: list[int] = []

    async def fetch(self, limit: int, after: str | None) -> list[int]:
        self.limits.append(limit)
        rows = [row for row in self.rows if after is None or row < int(after)]
        return rows[:limit]


async def test_keyset_pages_resume_after_the_last_row_and_end_without_a_token() -> None:
    store, seen, token = Rows(25), [], None
    while True:
        page, token = await keyset_page(store.fetch, 10, token, default_size=10, max_size=100, position=str)
        seen += page
        if token is None:
            break
    assert seen == store.rows and store.limits == [11, 11, 11]  # one row more than a page, to know if more follow
    exact = Rows(10)
    assert await keyset_page(exact.fetch, 10, None, default_size=10, max_size=100, position=str) == (exact.rows, None)
    assert len((await keyset_page(Rows(500).fetch, 500, None, default_size=10, max_size=100, position=str))[0]) == 100
    with pytest.raises(errors.InvalidArgument, match="page_size"):
        await keyset_page(Rows(1).fetch, -1, None, default_size=10, max_size=100, position=str)
    with pytest.raises(errors.InvalidArgument, match="page_token"):
        await keyset_page(Rows(1).fetch, 1, encode_token("offset", "3"), default_size=10, max_size=100, position=str)


def test_stored_key_is_created_once_and_private(tmp_path: Path) -> None:
    key, created = stored_key(tmp_path / "state")
    again, created_again = stored_key(tmp_path / "state")
    assert created and not created_again and key == again and key.startswith("lg-")
    assert stat.S_IMODE((tmp_path / "state" / "api-key").stat().st_mode) == 0o600


async def test_key_checks_match_google_and_name_the_project() -> None:
    keys = ApiKeys(configured_keys(["good"], {"alpha": ["alpha-key"]}))
    assert await keys.project_for("good") == "default"
    assert await keys.project_for("alpha-key") == "alpha"
    with pytest.raises(errors.PermissionDenied):
        await keys.project_for(None)
    with pytest.raises(errors.InvalidArgument) as caught:
        await keys.project_for("bad")
    assert caught.value.details[0]["reason"] == "API_KEY_INVALID"


class StoredKeys:
    def __init__(self) -> None:
        self.lookups = 0

    async def project_of(self, key_digest: str) -> str | None:
        self.lookups += 1
        return "beta" if key_digest == digest("db-key") else None


async def test_keys_created_with_the_cli_are_looked_up_and_cached() -> None:
    stored = StoredKeys()
    keys = ApiKeys({}, stored)  # type: ignore[arg-type]
    assert await keys.project_for("db-key") == "beta"
    assert await keys.project_for("db-key") == "beta"
    assert stored.lookups == 1
    with pytest.raises(errors.InvalidArgument):
        await keys.project_for("unknown")

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from localgem import errors
from localgem.auth.keys import ApiKeys, configured_keys, digest, stored_key
from localgem.types.paging import paginate


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

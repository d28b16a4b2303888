"""The playground's files: served at / and /playground/ without an API key, from the package, with a strict
content security policy (its behaviour in a browser: tests/e2e/test_playground_browser.py)."""

from __future__ import annotations

import re

import httpx

from tests.server import RunningServer


def test_the_page_and_its_assets_load_without_a_key(fake_server: RunningServer) -> None:
    page = httpx.get(fake_server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(/playground/[^"]+)"', page.text)
    assert sorted(assets) == ["/playground/app.js", "/playground/style.css"]
    for path, kind in zip(sorted(assets), ["text/javascript", "text/css"], strict=True):
        asset = httpx.get(fake_server.url + path)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind) and asset.content
    # Nothing is fetched from another origin at run time.
    assert "http" not in "".join(re.findall(r'(?:src|href)="([^"]*)"', page.text))


def test_only_the_playground_files_are_served(fake_server: RunningServer) -> None:
    for name in ("index.html", "routes.py", "..%2Froutes.py", "nothing.js"):
        answer = httpx.get(f"{fake_server.url}/playground/{name}")
        assert answer.status_code == 404 and answer.json()["error"]["status"] == "NOT_FOUND"


def test_the_api_still_wants_a_key(fake_server: RunningServer) -> None:
    assert httpx.get(fake_server.url + "/v1beta/models").status_code in (401, 403)

"""cachedContents over the HTTP layer, on the deterministic fake engine."""

from __future__ import annotations

from pathlib import Path

import httpx

from localgem.app import create_app
from localgem.settings import load_settings
from tests.conftest import API_KEY
from tests.fakes import FakeEngine
from tests.server import start_server

HEADERS = {"x-goog-api-key": API_KEY}


def test_min_tokens_and_the_engine_keeps_then_drops_the_state(tmp_path: Path) -> None:
    engine = FakeEngine()
    settings = load_settings(environ={}, data_dir=tmp_path, api_keys=[API_KEY], cache_min_tokens=200)
    server = start_server(create_app(settings, engine_factory=lambda entry: engine))
    try:
        url = f"{server.url}/v1beta/cachedContents"

        def create(text: str) -> httpx.Response:
            body = {"model": "models/gemini-2.5-flash", "contents": [{"parts": [{"text": text}]}]}
            return httpx.post(url, json=body, headers=HEADERS)

        small = create("too short")
        assert small.status_code == 400 and "min_total_token_count=200" in small.json()["error"]["message"]
        created = create("long enough " * 30)
        assert created.status_code == 200, created.text
        cache_id = created.json()["name"].split("/")[1]
        tokens = created.json()["usageMetadata"]["totalTokenCount"]
        assert tokens >= 200 and len(engine.kept[cache_id]) == tokens  # the engine kept exactly the cache's prompt
        assert (
            httpx.get(url, params={"pageSize": 1}, headers=HEADERS)
            .json()["cachedContents"][0]["name"]
            .endswith(cache_id)
        )
        assert httpx.delete(f"{url}/{cache_id}", headers=HEADERS).status_code == 200
        assert cache_id not in engine.kept
        gone = httpx.delete(f"{url}/{cache_id}", headers=HEADERS)
        assert gone.status_code == 403 and gone.json()["error"] == {
            "code": 403,
            "message": "CachedContent not found (or permission denied)",
            "status": "PERMISSION_DENIED",
        }
    finally:
        server.stop()

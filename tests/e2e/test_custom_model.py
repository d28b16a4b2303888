"""A user's own GGUF file, added by path with its own chat template and limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from localgem.app import create_app
from localgem.models.packaged import smollm2_135m_instruct
from localgem.settings import load_settings
from tests.conftest import API_KEY
from tests.server import start_server

TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant]"


def test_a_gguf_added_by_path_serves_gemini_names(tmp_path: Path) -> None:
    settings = load_settings(
        environ={},
        data_dir=tmp_path,
        api_keys=[API_KEY],
        builtin_models=False,
        default_model="my-model",
        models=[
            {
                "id": "my-model",
                "path": str(smollm2_135m_instruct(tmp_path)),
                "display_name": "Mine",
                "chat_template": TEMPLATE,
                "context_length": 1024,
                "output_token_limit": 64,
                "temperature": 0,
            }
        ],
    )
    server = start_server(create_app(settings))
    try:
        headers = {"x-goog-api-key": API_KEY}
        models = httpx.get(f"{server.url}/v1beta/models", headers=headers).json()["models"]
        assert [(m["name"], m["displayName"], m["inputTokenLimit"], m["outputTokenLimit"]) for m in models] == [
            ("models/my-model", "Mine", 1024, 64)
        ]
        body = {"contents": [{"parts": [{"text": "Hello"}]}]}
        answer = httpx.post(
            f"{server.url}/v1beta/models/gemini-2.5-flash:generateContent", json=body, headers=headers, timeout=120
        ).json()
        assert answer["modelVersion"] == "my-model"
        # The prompt is the configured template's rendering, not the GGUF's own template.
        engine = server.app.state.engines.loaded()["my-model"].engine
        expected = asyncio.run(engine.tokenize("[user] Hello\n[assistant]"))
        assert answer["usageMetadata"]["promptTokenCount"] == len(expected)
        too_long = httpx.post(
            f"{server.url}/v1beta/models/my-model:generateContent",
            headers=headers,
            json={**body, "generationConfig": {"maxOutputTokens": 65}},
        )
        assert too_long.status_code == 400 and "max_output_tokens" in too_long.json()["error"]["message"]
    finally:
        server.stop()


def test_flash_attention_option_serves(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"LOCALGEM_FLASH_ATTENTION": "true", "LOCALGEM_SLOTS": "2"}, data_dir=tmp_path, api_keys=[API_KEY]
    )
    assert settings.flash_attention and settings.slots == 2
    server = start_server(create_app(settings))
    try:
        body = {"contents": [{"parts": [{"text": "Hello"}]}], "generationConfig": {"maxOutputTokens": 5, "seed": 1}}
        url = f"{server.url}/v1beta/models/gemini-2.5-flash:generateContent"
        first = httpx.post(url, json=body, headers={"x-goog-api-key": API_KEY}, timeout=120).json()
        again = httpx.post(url, json=body, headers={"x-goog-api-key": API_KEY}, timeout=120).json()
        assert first["candidates"][0]["content"] == again["candidates"][0]["content"]
        assert first["usageMetadata"]["candidatesTokenCount"] > 0
    finally:
        server.stop()

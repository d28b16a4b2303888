"""Quotas on the real model, through the real SDK: its retry (HttpRetryOptions on 429) gets through a
requests-per-minute limit, streamed or not; an input-token limit refuses a long prompt before it runs."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import API_KEY, start_real_server

CONFIG = types.GenerateContentConfig(max_output_tokens=4, temperature=0)


def test_sdk_retry_gets_through_the_real_models_quotas(tmp_path) -> None:
    server = start_real_server(
        tmp_path,
        quotas=[{"model": "gemini-*", "requests_per_minute": 1}, {"model": "gemini-*", "tokens_per_minute": 400}],
        quota_minute_seconds=2,
        preload=[],
    )
    try:
        retry = types.HttpRetryOptions(attempts=8, initial_delay=0.5, max_delay=1.5, http_status_codes=[429])
        client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url, retry_options=retry))
        for _ in range(2):
            assert client.models.generate_content(model="gemini-2.5-flash", contents="Say hi.", config=CONFIG).text
            streamed = client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi.", config=CONFIG)
            assert "".join(chunk.text or "" for chunk in streamed)
        long = "Please repeat this sentence. " * 80
        assert client.models.count_tokens(model="gemini-2.5-flash", contents=long).total_tokens > 400
        plain = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))
        with pytest.raises(genai_errors.ClientError) as caught:
            plain.models.generate_content(model="gemini-2.5-flash", contents=long, config=CONFIG)
        assert caught.value.code == 429
        assert "generate_content_input_token_count, limit: 400" in caught.value.message
        # The local id is not a gemini-* name: these rules do not limit it.
        assert plain.models.generate_content(model="smollm2-135m-instruct", contents=long, config=CONFIG).text
    finally:
        server.stop()

"""Context caching through google-genai on the real model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import API_KEY, OTHER_KEY, engine_of

MODEL = "gemini-2.5-flash"
MANUAL = "\n".join(
    f"Step {i}: turn dial {i % 7} to position {i * 3 % 11}, then wait {i % 5 + 1} minutes before the next step."
    for i in range(1, 60)
)
SYSTEM = "You answer questions about the machine manual. Be brief."
GREEDY = {"temperature": 0.0, "max_output_tokens": 24}


def make_cache(client: genai.Client, ttl: str = "300s") -> types.CachedContent:
    return client.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            contents=[types.Content(role="user", parts=[types.Part(text=MANUAL)])],
            system_instruction=SYSTEM,
            display_name="manual",
            ttl=ttl,
        ),
    )


def test_cache_lifecycle(client: genai.Client, real_server) -> None:
    before = datetime.now(UTC)
    cache = make_cache(client)
    assert cache.name.startswith("cachedContents/") and cache.display_name == "manual"
    assert cache.model == "models/smollm2-135m-instruct"
    assert cache.usage_metadata.total_token_count > 1000
    assert before + timedelta(seconds=290) < cache.expire_time < datetime.now(UTC) + timedelta(seconds=310)
    assert client.caches.get(name=cache.name).name == cache.name
    assert cache.name in [c.name for c in client.caches.list()]

    longer = client.caches.update(name=cache.name, config=types.UpdateCachedContentConfig(ttl="3600s"))
    assert longer.expire_time > cache.expire_time + timedelta(seconds=3000)
    url, headers = f"{real_server.url}/v1beta/{cache.name}", {"x-goog-api-key": API_KEY}
    assert httpx.patch(url, json={"displayName": "new"}, headers=headers).status_code == 400
    assert httpx.patch(url, params={"updateMask": "contents"}, json={"ttl": "5s"}, headers=headers).status_code == 400
    assert httpx.patch(url, params={"updateMask": "ttl"}, json={"ttl": "60s"}, headers=headers).status_code == 200

    other = genai.Client(api_key=OTHER_KEY, http_options=types.HttpOptions(base_url=real_server.url))
    with pytest.raises(genai_errors.ClientError) as caught:
        other.caches.get(name=cache.name)
    assert caught.value.code == 403 and caught.value.status == "PERMISSION_DENIED"
    with pytest.raises(genai_errors.ClientError) as caught:
        other.models.generate_content(
            model=MODEL, contents="Hi", config=types.GenerateContentConfig(cached_content=cache.name)
        )
    assert caught.value.code == 403
    assert cache.name not in [c.name for c in other.caches.list()]

    client.caches.delete(name=cache.name)
    with pytest.raises(genai_errors.ClientError) as caught:
        client.caches.get(name=cache.name)
    assert caught.value.code == 403 and "not found (or permission denied)" in caught.value.message


def test_a_cached_prefix_answers_as_the_full_prompt_does(client: genai.Client, real_server) -> None:
    cache = make_cache(client)
    question = "What does step 12 say?"
    engine = engine_of(real_server)
    evaluated = engine.stats.prompt_tokens_evaluated
    cached = client.models.generate_content(
        model=MODEL, contents=question, config=types.GenerateContentConfig(cached_content=cache.name, **GREEDY)
    )
    full = client.models.generate_content(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text=MANUAL)]),
            types.Content(role="user", parts=[types.Part(text=question)]),
        ],
        config=types.GenerateContentConfig(system_instruction=SYSTEM, **GREEDY),
    )
    # The cached prefix was not computed again (prompts go in chunks of 64 tokens).
    prompt = cached.usage_metadata.prompt_token_count
    assert engine.stats.prompt_tokens_evaluated - evaluated <= prompt - cache.usage_metadata.total_token_count + 128
    assert cached.text == full.text
    assert cached.usage_metadata.prompt_token_count == full.usage_metadata.prompt_token_count
    assert cached.usage_metadata.cached_content_token_count >= cache.usage_metadata.total_token_count - 8
    counted = httpx.post(
        f"{real_server.url}/v1beta/models/{MODEL}:countTokens",
        json={
            "generateContentRequest": {
                "model": f"models/{MODEL}",
                "cachedContent": cache.name,
                "contents": [{"role": "user", "parts": [{"text": question}]}],
            }
        },
        headers={"x-goog-api-key": API_KEY},
    ).json()
    assert counted["totalTokens"] == cached.usage_metadata.prompt_token_count
    assert counted["cachedContentTokenCount"] == cached.usage_metadata.cached_content_token_count
    streamed = "".join(
        chunk.text or ""
        for chunk in client.models.generate_content_stream(
            model=MODEL, contents=question, config=types.GenerateContentConfig(cached_content=cache.name, **GREEDY)
        )
    )
    assert streamed == cached.text


def test_what_a_request_may_not_change_when_it_uses_a_cache(client: genai.Client) -> None:
    cache = make_cache(client)
    for config in (
        types.GenerateContentConfig(cached_content=cache.name, system_instruction="Other."),
        types.GenerateContentConfig(
            cached_content=cache.name,
            tools=[types.Tool(function_declarations=[types.FunctionDeclaration(name="f", description="d")])],
        ),
    ):
        with pytest.raises(genai_errors.ClientError) as caught:
            client.models.generate_content(model=MODEL, contents="Hi", config=config)
        assert caught.value.code == 400 and "CachedContent can not be used" in caught.value.message
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(
            model="gemma-3-270m", contents="Hi", config=types.GenerateContentConfig(cached_content=cache.name)
        )
    assert caught.value.code == 400 and "has to be the same" in caught.value.message
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(
            model=MODEL, contents="Hi", config=types.GenerateContentConfig(cached_content="cachedContents/nope0000")
        )
    assert caught.value.code == 403
    for bad in (
        {"model": "models/gemini-embedding-001", "contents": [{"parts": [{"text": "x"}]}]},
        {"model": MODEL, "contents": [{"parts": [{"text": "x"}]}], "ttl": "-5s"},
        {"model": MODEL, "contents": [{"parts": [{"text": "x"}]}], "ttl": "5s", "expireTime": "2030-01-01T00:00:00Z"},
        {"model": MODEL},
    ):
        with pytest.raises(genai_errors.ClientError) as caught:
            client._api_client.request("post", "cachedContents", bad)
        assert caught.value.code == 400, bad
    client.caches.delete(name=cache.name)

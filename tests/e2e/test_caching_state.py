"""Cached contents keep real KV state: restored after a restart instead of recomputed, gone when they expire."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from localgem.app import create_app
from localgem.settings import load_settings
from tests.conftest import API_KEY, SMOLLM, engine_of
from tests.server import start_server

HEADERS = {"x-goog-api-key": API_KEY}
MANUAL = "\n".join(f"Rule {i}: the {i}th valve opens after {i * 7 % 13} seconds of pressure." for i in range(1, 80))
QUESTION = {"role": "user", "parts": [{"text": "When does valve 9 open?"}]}
GREEDY = {"temperature": 0, "maxOutputTokens": 16}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/v1beta/{path}", json=body, headers=HEADERS, timeout=300)


def test_kept_state_survives_a_restart_and_expires(tmp_path: Path) -> None:
    clock = Clock()
    settings = load_settings(environ={}, data_dir=tmp_path, api_keys=[API_KEY], sweep_interval_seconds=0.2)
    first = start_server(create_app(settings, clock=clock))
    try:
        created = post(
            first.url,
            "cachedContents",
            {
                "model": "models/gemini-2.5-flash",
                "contents": [{"role": "user", "parts": [{"text": MANUAL}]}],
                "systemInstruction": {"parts": [{"text": "Answer from the rules."}]},
                "ttl": "600s",
            },
        ).json()
        cached_tokens = created["usageMetadata"]["totalTokenCount"]
        assert cached_tokens > 1500
        kept = list((tmp_path / "kv" / SMOLLM).glob("*.kv"))
        assert [f.stem for f in kept] == [created["name"].split("/")[1]]
    finally:
        first.stop()

    second = start_server(create_app(settings, clock=clock))
    try:
        engine = engine_of(second)
        evaluated = engine.stats.prompt_tokens_evaluated
        answer = post(
            second.url,
            "models/gemini-2.5-flash:generateContent",
            {"cachedContent": created["name"], "contents": [QUESTION], "generationConfig": GREEDY},
        ).json()
        usage = answer["usageMetadata"]
        assert engine.stats.prefixes_restored == 1
        # Only what follows the cached prefix was computed (prompts go in chunks of 64 tokens).
        assert engine.stats.prompt_tokens_evaluated - evaluated <= usage["promptTokenCount"] - cached_tokens + 128
        assert usage["cachedContentTokenCount"] == cached_tokens
        # The same full prompt without the cache gives the same answer.
        full = post(
            second.url,
            "models/gemini-2.5-flash:generateContent",
            {
                "systemInstruction": {"parts": [{"text": "Answer from the rules."}]},
                "contents": [{"role": "user", "parts": [{"text": MANUAL}]}, QUESTION],
                "generationConfig": GREEDY,
            },
        ).json()
        assert full["candidates"][0]["content"] == answer["candidates"][0]["content"]
        assert full["usageMetadata"]["promptTokenCount"] == usage["promptTokenCount"]

        clock.now += timedelta(seconds=601)
        assert httpx.get(f"{second.url}/v1beta/{created['name']}", headers=HEADERS).status_code == 403
        expired = post(
            second.url,
            "models/gemini-2.5-flash:generateContent",
            {"cachedContent": created["name"], "contents": [QUESTION]},
        )
        assert expired.status_code == 403
        deadline = time.monotonic() + 10
        while list((tmp_path / "kv" / SMOLLM).glob("*.kv")):  # the sweeper deletes the kept state
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        second.stop()


def test_deleting_a_cache_in_use_does_not_disturb_the_request(tmp_path: Path) -> None:
    settings = load_settings(environ={}, data_dir=tmp_path, api_keys=[API_KEY])
    server = start_server(create_app(settings))
    try:
        created = post(
            server.url,
            "cachedContents",
            {"model": "models/gemini-2.5-flash", "contents": [{"role": "user", "parts": [{"text": MANUAL}]}]},
        ).json()
        body = {
            "cachedContent": created["name"],
            "contents": [{"role": "user", "parts": [{"text": "Repeat all the rules, one by one."}]}],
            "generationConfig": {"temperature": 0, "maxOutputTokens": 200},
        }
        with httpx.stream(
            "POST",
            f"{server.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            params={"alt": "sse"},
            json=body,
            headers=HEADERS,
            timeout=300,
        ) as stream:
            lines = stream.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
            deleted = httpx.delete(f"{server.url}/v1beta/{created['name']}", headers=HEADERS)
            assert deleted.status_code == 200
            rest = [line for line in lines if line.startswith("data:")]
        assert first and rest and '"finishReason"' in rest[-1]
        assert not list((tmp_path / "kv" / SMOLLM).glob("*.kv"))
        gone = post(server.url, "models/gemini-2.5-flash:generateContent", body)
        assert gone.status_code == 403
    finally:
        server.stop()


def test_state_evicted_from_ram_and_disk_is_recomputed_and_kept_again(tmp_path: Path) -> None:
    settings = load_settings(environ={}, data_dir=tmp_path, api_keys=[API_KEY], cache_ram_bytes=1, cache_disk_bytes=1)
    server = start_server(create_app(settings))
    try:
        names = []
        for topic in ("valves", "pumps"):
            text = MANUAL.replace("valve", topic)
            body = {"model": "models/gemini-2.5-flash", "contents": [{"role": "user", "parts": [{"text": text}]}]}
            names.append(post(server.url, "cachedContents", body).json()["name"])
        kept_dir = tmp_path / "kv" / SMOLLM
        first_id = names[0].split("/")[1]
        assert [f.stem for f in kept_dir.glob("*.kv")] == [names[1].split("/")[1]]  # the budget keeps one
        answer = post(
            server.url,
            "models/gemini-2.5-flash:generateContent",
            {"cachedContent": names[0], "contents": [QUESTION], "generationConfig": GREEDY},
        )
        assert answer.status_code == 200 and answer.json()["candidates"][0]["content"]["parts"][0]["text"]
        assert [f.stem for f in kept_dir.glob("*.kv")] == [first_id]  # computed from the prompt, kept again
    finally:
        server.stop()


def test_state_the_other_attention_mode_kept_is_recomputed_not_read(tmp_path: Path) -> None:
    body = {"model": "models/gemini-2.5-flash", "contents": [{"role": "user", "parts": [{"text": MANUAL}]}]}
    plain = load_settings(environ={}, data_dir=tmp_path, api_keys=[API_KEY], flash_attention=False)
    first = start_server(create_app(plain))
    try:
        name = post(first.url, "cachedContents", body).json()["name"]
    finally:
        first.stop()
    kept = tmp_path / "kv" / SMOLLM / f"{name.split('/')[1]}.kv"
    written = kept.read_bytes()

    flash = start_server(
        create_app(load_settings(environ={}, data_dir=tmp_path, api_keys=[API_KEY], flash_attention=True))
    )
    try:
        engine = engine_of(flash)
        mode = "flash attention, f16 K and V, prompts tiled past 56 cells, dot products"  # the defaults
        assert engine._native.attention_mode == mode
        evaluated = engine.stats.prompt_tokens_evaluated
        cached = {"cachedContent": name, "contents": [QUESTION], "generationConfig": GREEDY}
        answer = post(flash.url, "models/gemini-2.5-flash:generateContent", cached).json()
        assert engine.stats.prefixes_restored == 0  # the plain-attention state was not read
        assert engine.stats.prompt_tokens_evaluated - evaluated >= answer["usageMetadata"]["cachedContentTokenCount"]
        full = {"contents": [body["contents"][0], QUESTION], "generationConfig": GREEDY}
        assert (
            post(flash.url, "models/gemini-2.5-flash:generateContent", full).json()["candidates"]
            == answer["candidates"]
        )
        assert kept.read_bytes() != written  # kept again, as flash attention computed it
    finally:
        flash.stop()

    again = start_server(create_app(plain))
    try:
        engine = engine_of(again)
        post(again.url, "models/gemini-2.5-flash:generateContent", cached)
        assert engine.stats.prefixes_restored == 0  # nor the flash one by plain attention
    finally:
        again.stop()

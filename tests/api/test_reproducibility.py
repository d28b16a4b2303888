"""Same request, same output: cold or warm, streamed or unary, alone or among 8 (SmolLM2).

A property test over many prompts whose lengths cover every position of a prompt's end within 16 tokens (every
offset within a prefill chunk, the short tails that join the chunk before them included, and within the 8 cells
prompt calls end on), with and without a shared system prompt, chat turns that extend earlier prompts, greedy
and seeded sampling, and two candidates.
The reference is a server that never reuses cells (every prompt computed whole, one at a time); the
session's server reuses what its slots and earlier prompts left. Outputs are compared with their log
probabilities, so a difference in the last bit of a logit fails even where the text agrees.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterator

import httpx
import pytest
from google import genai
from google.genai import types

from localgem.app import create_app
from localgem.engines.llama.native import PROMPT_CELLS_MULTIPLE
from localgem.models.builtin import BUILTIN_MODELS
from localgem.settings import Settings, load_settings
from tests.conftest import API_KEY, SMOLLM, engine_of
from tests.server import RunningServer, start_server

MODEL = "gemini-2.5-flash"
GEMMA = "gemma-3-270m"
WORDS = ("river stone lamp garden window paper yellow quiet morning letter bridge music salt orange cloud map").split()
GUIDE = " ".join(f"Rule {i}: answer in plain words and keep each line short." for i in range(6))
OUTPUT_TOKENS = 10


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The built-in models with prefix reuse off: every prompt is computed whole."""
    settings = load_settings(
        environ={},
        data_dir=tmp_path_factory.mktemp("reference"),
        api_keys=[API_KEY],
        models=[config.model_copy(update={"reuse_prefixes": False}) for config in BUILTIN_MODELS],
    )
    server = start_server(create_app(settings))
    yield server
    server.stop()


def client_of(server: RunningServer) -> genai.Client:
    return genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url, api_version="v1beta"))


def prompt_tokens(server: RunningServer, model: str, contents: list[types.Content], system: str | None) -> int:
    request: dict = {
        "model": f"models/{model}",
        "contents": [c.model_dump(mode="json", exclude_none=True) for c in contents],
    }
    if system is not None:
        request["systemInstruction"] = {"parts": [{"text": system}]}
    response = httpx.post(
        f"{server.url}/v1beta/models/{model}:countTokens",
        json={"generateContentRequest": request},
        headers={"x-goog-api-key": API_KEY},
        timeout=120,  # the first call loads the model
    )
    return response.json()["totalTokens"]


Request = tuple[list[types.Content], types.GenerateContentConfig]


def requests(
    server: RunningServer, model: str = MODEL, systems: tuple[str | None, ...] = (GUIDE, None), every: int = 1
) -> list[Request]:
    """Prompts whose last token falls on every offset within a span of at least 16 tokens, a whole number of
    chunks and of the cell multiple prompt calls end on (``every``: every other one, ...), in families (one per
    system instruction; None: without one), then chat turns extending some of them; greedy and seeded."""
    chunk = Settings().prefill_chunk
    span = math.lcm(chunk, PROMPT_CELLS_MULTIPLE, 16)
    rng = random.Random(14)
    made: list[Request] = []
    for family, system in enumerate(systems):
        words: list[str] = []
        for offset in range(0, span, every):
            while True:
                words.append(rng.choice(WORDS))
                contents = [types.Content(role="user", parts=[types.Part(text=" ".join(words))])]
                if (prompt_tokens(server, model, contents, system) - 1) % span == offset:
                    break
            made.append((contents, config(system, sampled=(offset + family) % 2 == 1, seed=offset)))
    for i in range(0, len(made), 5):  # the next turn of a chat: the earlier prompt, an answer, a question
        contents, earlier = made[i]
        turn = [
            *contents,
            types.Content(role="model", parts=[types.Part(text="Here is my answer.")]),
            types.Content(role="user", parts=[types.Part(text=" ".join(rng.choices(WORDS, k=3 + i)))]),
        ]
        made.append((turn, earlier))
    made.append((made[3][0], config(GUIDE, True, seed=7, candidates=2)))  # the second candidate copies cells
    return made


def config(system: str | None, sampled: bool, *, seed: int, candidates: int = 1) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        system_instruction=system,
        temperature=0.9 if sampled else 0,
        top_k=40,
        top_p=0.95,
        seed=seed,
        max_output_tokens=OUTPUT_TOKENS,
        candidate_count=candidates,
        response_logprobs=True,
        logprobs=2,
    )


Fingerprint = list[tuple[str, list[tuple[int, float]], list[list[tuple[int, float]]]]]


def fingerprint(responses: list[types.GenerateContentResponse]) -> Fingerprint:
    """Each candidate's text and, token by token, the chosen token's and the top tokens' log
    probabilities, gathered over one response or all the chunks of a stream."""
    found: dict[int, tuple[list[str], list[tuple[int, float]], list[list[tuple[int, float]]]]] = {}
    for response in responses:
        for candidate in response.candidates or []:
            text, chosen, top = found.setdefault(candidate.index or 0, ([], [], []))
            text += [part.text or "" for part in (candidate.content.parts or [])] if candidate.content else []
            result = candidate.logprobs_result
            if result is not None:
                chosen += [(c.token_id, c.log_probability) for c in result.chosen_candidates or []]
                top += [
                    [(c.token_id, c.log_probability) for c in t.candidates or []] for t in result.top_candidates or []
                ]
    return [("".join(text), chosen, top) for _, (text, chosen, top) in sorted(found.items())]


@pytest.fixture(scope="module")
def cases(reference: RunningServer) -> list[Request]:
    return requests(reference)


@pytest.fixture(scope="module")
def cold(reference: RunningServer, cases: list[Request]) -> list[Fingerprint]:
    results = cold_outputs(reference, MODEL, cases)
    assert reused_tokens(reference, MODEL) == 0
    assert all(len(chosen) == OUTPUT_TOKENS or text for result in results for text, chosen, _ in result)
    return results


def assert_warm_equals_cold(server: RunningServer, model: str, cases: list[Request], cold: list[Fingerprint]) -> None:
    """Each request twice in a row: first from what earlier prompts left (a shared system prompt, the
    previous chat turn), then from its own cells."""
    client = client_of(server)
    reused = reused_tokens(server, model)
    for (contents, config), expected in zip(cases, cold, strict=True):
        for _ in range(2):
            response = client.models.generate_content(model=model, contents=contents, config=config)
            assert fingerprint([response]) == expected, contents[-1].parts[0].text
    # Most prompts started from cached cells: what is compared really was reused.
    assert reused_tokens(server, model) - reused > 20 * len(cases)


def engine_id(model: str) -> str:
    """The id of the engine a model name the requests use runs on (MODEL is an alias of SmolLM2)."""
    return SMOLLM if model == MODEL else model


def reused_tokens(server: RunningServer, model: str) -> int:
    """Prompt tokens the model's engine has reused so far (none before it is loaded)."""
    model_id = engine_id(model)
    if model_id not in server.app.state.engines.loaded():
        return 0
    return engine_of(server, model_id).stats.prompt_tokens_reused


def cold_outputs(reference: RunningServer, model: str, cases: list[Request]) -> list[Fingerprint]:
    client = client_of(reference)
    return [
        fingerprint([client.models.generate_content(model=model, contents=contents, config=config)])
        for contents, config in cases
    ]


async def streamed_fingerprint(
    client: genai.Client, contents: list[types.Content], config: types.GenerateContentConfig, model: str = MODEL
) -> Fingerprint:
    chunks = await client.aio.models.generate_content_stream(model=model, contents=contents, config=config)
    return fingerprint([chunk async for chunk in chunks])


def test_warm_prompts_give_the_cold_output(real_server: RunningServer, cases: list[Request], cold) -> None:
    assert_warm_equals_cold(real_server, MODEL, cases, cold)


@pytest.fixture(scope="module")
def gemma_cases(reference: RunningServer) -> list[Request]:
    return requests(reference, GEMMA, systems=(GUIDE,), every=2)  # SmolLM2's tests cover every offset


@pytest.fixture(scope="module")
def gemma_cold(reference: RunningServer, gemma_cases: list[Request]) -> list[Fingerprint]:
    results = cold_outputs(reference, GEMMA, gemma_cases)
    assert reused_tokens(reference, GEMMA) == 0
    return results


def test_gemma_warm_prompts_give_the_cold_output(
    real_server: RunningServer, gemma_cases: list[Request], gemma_cold: list[Fingerprint]
) -> None:
    """Gemma 3's output does not depend on reuse either."""
    assert_warm_equals_cold(real_server, GEMMA, gemma_cases, gemma_cold)


def test_gemma_streams_among_eight_give_the_cold_output(
    real_server: RunningServer, gemma_cases: list[Request], gemma_cold: list[Fingerprint]
) -> None:
    """Nor on what shares its decode steps: its K-quant weights (Q4_K, Q6_K) are multiplied by one kernel
    whatever the rows of a call (see ``library.choose_matmul_kernels``; with llama.cpp's repacked and tiled kernels
    none of eight sequences came out bit-identical alone and among eight)."""
    among_eight(real_server, GEMMA, gemma_cases, gemma_cold)


def test_streams_among_eight_give_the_cold_output(real_server: RunningServer, cases: list[Request], cold) -> None:
    """All the requests as streams, eight at a time in a shuffled order, then as unary calls: every
    decode step holds several sequences, and each prompt meets different neighbours and caches."""
    engine = engine_of(real_server)
    copied = engine.stats.prompts_copied
    among_eight(real_server, MODEL, cases, cold)
    # Prompts that arrived together with a shared system prompt started from copies of one another's cells.
    assert engine.stats.prompts_copied - copied > 0, engine.stats.prompts_copied


def among_eight(server: RunningServer, model: str, cases: list[Request], cold: list[Fingerprint]) -> None:
    """The requests as streams, eight at a time in a shuffled order, then as unary calls, give the cold outputs."""
    prompt_tokens(server, model, cases[0][0], None)  # loads the model
    client = client_of(server)
    engine = engine_of(server, engine_id(model))
    order = list(range(len(cases)))
    random.Random(8).shuffle(order)

    async def one(index: int, stream: bool) -> tuple[int, Fingerprint]:
        contents, config = cases[index]
        if stream:
            return index, await streamed_fingerprint(client, contents, config, model)
        return index, fingerprint(
            [await client.aio.models.generate_content(model=model, contents=contents, config=config)]
        )

    async def all_of(stream: bool) -> dict[int, Fingerprint]:
        found: dict[int, Fingerprint] = {}
        for start in range(0, len(order), 8):
            found.update(await asyncio.gather(*[one(i, stream) for i in order[start : start + 8]]))
        return found

    steps, rows = engine.stats.decode_steps, engine.stats.decode_rows
    for stream in (True, False):
        found = asyncio.run(all_of(stream))
        for index, expected in enumerate(cold):
            assert found[index] == expected, (stream, cases[index][0][-1].parts[0].text)
    assert (engine.stats.decode_rows - rows) / (engine.stats.decode_steps - steps) > 3


def test_prompts_either_side_of_the_one_pass_cells_among_others_give_the_cold_output(
    real_server: RunningServer, reference: RunningServer
) -> None:
    """Prompts from ~10 to ~150 tokens, eight at a time: a turn's prompt budget ends some prompts' calls early, but
    a prompt longer than what is read in one pass (``NativeModel.one_pass_cells``) never has a call end within
    those cells, and its cells and a shorter prompt's are never reused for each other."""
    rng = random.Random(56)
    cases: list[Request] = []
    for i in range(24):
        words = " ".join(rng.choices(WORDS, k=rng.randrange(5, 30) if i % 3 == 0 else rng.randrange(30, 110)))
        cases.append(([types.Content(role="user", parts=[types.Part(text=words)])], config(None, i % 2 == 1, seed=i)))
    lengths = [prompt_tokens(reference, MODEL, contents, None) - 1 for contents, _ in cases]
    assert min(lengths) < 56 < max(lengths)
    among_eight(real_server, MODEL, cases, cold_outputs(reference, MODEL, cases))


def test_long_prompts_alone_and_among_others_give_one_output(
    real_server: RunningServer, reference: RunningServer
) -> None:
    """Past 512 cells llama.cpp's flash attention splits a lone decode row's cells across threads and sums the
    parts (rounding otherwise than the same row among other sequences): prompts of ~540 tokens decoded one at a
    time on the reference (each step with a draft row of the sequence's next token, two tokens a step where the
    guess was right) and four at once on the session's server give the same tokens and log probabilities."""
    rng = random.Random(24)
    cases = [
        (
            [types.Content(role="user", parts=[types.Part(text=f"{GUIDE} {' '.join(rng.choices(WORDS, k=420))}")])],
            config(None, sampled=i % 2 == 1, seed=i),
        )
        for i in range(4)
    ]
    assert all(prompt_tokens(reference, MODEL, contents, None) > 520 for contents, _ in cases)
    drafts = engine_of(reference).stats.draft_rows
    alone = cold_outputs(reference, MODEL, cases)
    # Alone, each decode row took a draft row of its next token (where it would have taken a companion row).
    assert engine_of(reference).stats.draft_rows - drafts >= len(cases)
    client = client_of(real_server)
    engine = engine_of(real_server)
    steps, rows = engine.stats.decode_steps, engine.stats.decode_rows

    async def together() -> list[Fingerprint]:
        return list(await asyncio.gather(*[streamed_fingerprint(client, *case) for case in cases]))

    assert asyncio.run(together()) == alone
    assert (engine.stats.decode_rows - rows) / (engine.stats.decode_steps - steps) > 2

"""codeExecution through the real HTTP stack and the real sandbox, the model's side scripted by the fake
engine (one script per round: the answer up to its code block, the code, the answer after it): parts in
order, streamed whole, files in, figures out, in batches, cached contents and Live; and the 400s."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from localgem.generation.tool_prompt import render_call
from tests.conftest import API_KEY, start_fake_server
from tests.fakes import FakeEngine
from tests.live import open_session, read_turn, send, user_turn
from tests.sandboxes import requires_sandbox
from tests.server import RunningServer

pytestmark = requires_sandbox

MODEL = "gemini-2.5-flash"
CODE_EXECUTION = [types.Tool(code_execution=types.ToolCodeExecution())]
#: The three rounds of an answer that sums a CSV column: text and the fence, the code, the answer.
CSV_ROUNDS = [
    "Let me add them up.\n```python\nthis part is never read",
    "python\nimport pandas as pd\nprint(pd.read_csv('input_file_0.csv')['n'].sum())\n```\nnor this",
    "The total is 10.",
]
CSV = types.Part.from_bytes(data=b"n\n1\n2\n3\n4\n", mime_type="text/csv")


@pytest.fixture(scope="module")
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(scope="module")
def server(tmp_path_factory, engine: FakeEngine) -> Iterator[RunningServer]:
    running = start_fake_server(tmp_path_factory.mktemp("data"), engine, cache_min_tokens=1)
    yield running
    running.stop()


@pytest.fixture
def client(server: RunningServer, engine: FakeEngine) -> genai.Client:
    engine.script.clear()
    engine.prompts.clear()
    return genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))


def kinds(parts: list[types.Part]) -> list[str]:
    return [
        next(
            k
            for k in ("text", "executable_code", "code_execution_result", "inline_data", "function_call")
            if getattr(p, k) is not None
        )
        for p in parts
    ]


def test_the_code_runs_and_the_model_reads_its_output(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = CSV_ROUNDS
    response = client.models.generate_content(
        model=MODEL, contents=[CSV, "Add up the numbers."], config=types.GenerateContentConfig(tools=CODE_EXECUTION)
    )
    parts = response.candidates[0].content.parts
    assert kinds(parts) == ["text", "executable_code", "code_execution_result", "text"]
    assert parts[0].text == "Let me add them up.\n"
    code = parts[1].executable_code
    assert code.language == types.Language.PYTHON and code.code.startswith("import pandas")
    result = parts[2].code_execution_result
    assert (result.outcome, result.output, result.id) == (types.Outcome.OUTCOME_OK, "10\n", code.id)
    assert parts[3].text == "The total is 10."
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.executable_code == code.code and response.code_execution_result == "10\n"
    # Each round's prompt is the last one plus what was written since; the file's name was given.
    first, code_round, last = engine.prompts
    assert "input_file_0.csv" in first and "```python" in first  # how to run code, in the system text
    assert code_round == first + "Let me add them up.\n```python\n"
    assert last.startswith(code_round) and last.endswith("```\n```output\n10\n```\n")
    # The answer goes back as history: its code and output are read in the same form.
    history = [
        types.Content(role="user", parts=[CSV, types.Part(text="Add up the numbers.")]),
        response.candidates[0].content,
    ]
    engine.script[:] = ["Done."]
    client.models.generate_content(
        model=MODEL,
        contents=[*history, types.Content(role="user", parts=[types.Part(text="Thanks")])],
        config=types.GenerateContentConfig(tools=CODE_EXECUTION),
    )
    assert "```python\nimport pandas" in engine.prompts[-1] and "```output\n10\n```" in engine.prompts[-1]


def test_streaming_sends_each_part_when_it_is_ready(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = CSV_ROUNDS
    chunks = list(
        client.models.generate_content_stream(
            model=MODEL, contents=[CSV, "Add up."], config=types.GenerateContentConfig(tools=CODE_EXECUTION)
        )
    )
    parts = [part for chunk in chunks for part in chunk.candidates[0].content.parts or []]
    code = [p for p in parts if p.executable_code]
    results = [p for p in parts if p.code_execution_result]
    assert len(code) == 1 and len(results) == 1 and results[0].code_execution_result.output == "10\n"
    order = [k for k in kinds(parts)]
    assert order.index("executable_code") < order.index("code_execution_result") < len(order) - 1
    assert "".join(p.text for p in parts[: order.index("executable_code")]) == "Let me add them up.\n"
    assert "".join(p.text or "" for p in parts[order.index("code_execution_result") + 1 :]) == "The total is 10."
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


def test_figures_come_back_as_images_and_failures_as_outcomes(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = [
        "```python",
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\n```",
        "Here it is.\n```python",
        "print('before')\n1 / 0\n```",
        "That failed.",
    ]
    response = client.models.generate_content(
        model=MODEL, contents="Plot it.", config=types.GenerateContentConfig(tools=CODE_EXECUTION)
    )
    parts = response.candidates[0].content.parts
    assert kinds(parts) == [
        "executable_code",
        "code_execution_result",
        "inline_data",
        "text",
        "executable_code",
        "code_execution_result",
        "text",
    ]
    assert parts[2].inline_data.mime_type == "image/png" and parts[2].inline_data.data.startswith(b"\x89PNG")
    failed = parts[5].code_execution_result
    assert failed.outcome == types.Outcome.OUTCOME_FAILED
    assert failed.output.startswith("before\nTraceback") and "ZeroDivisionError" in failed.output
    assert "[figure_001.png is shown to the user]" in engine.prompts[2]


def test_with_function_declarations_the_answer_may_end_in_a_call(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = ["```python", "print(3 + 4)\n```", render_call("record", {"total": 7})]
    record = types.FunctionDeclaration(
        name="record", parameters_json_schema={"type": "object", "properties": {"total": {"type": "integer"}}}
    )
    response = client.models.generate_content(
        model=MODEL,
        contents="Add and record.",
        config=types.GenerateContentConfig(tools=[*CODE_EXECUTION, types.Tool(function_declarations=[record])]),
    )
    parts = response.candidates[0].content.parts
    assert [k for k in kinds(parts) if k != "text"] == ["executable_code", "code_execution_result", "function_call"]
    assert parts[1].code_execution_result.output == "7\n"
    assert response.function_calls[0].name == "record" and response.function_calls[0].args == {"total": 7}


def test_code_runs_are_bounded(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = ["```python", "print(1)\n```"] * 5 + ["```python\nprint(2)\n```"]
    response = client.models.generate_content(
        model=MODEL, contents="Loop.", config=types.GenerateContentConfig(tools=CODE_EXECUTION)
    )
    parts = response.candidates[0].content.parts
    assert sum(1 for p in parts if p.executable_code) == 5
    assert parts[-1].text == "```python\nprint(2)\n```"  # past the bound a block is only text


def test_a_block_cut_by_max_tokens_is_not_run(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = ["```python", "print('never')\n" * 50]
    response = client.models.generate_content(
        model=MODEL, contents="x", config=types.GenerateContentConfig(tools=CODE_EXECUTION, max_output_tokens=20)
    )
    parts = response.candidates[0].content.parts
    assert kinds(parts) == ["executable_code"]
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_in_a_batch_and_with_a_cached_content(client: genai.Client, engine: FakeEngine) -> None:
    engine.script[:] = ["```python", "print(6 * 7)\n```", "42."]
    job = client.batches.create(
        model=MODEL,
        src=[types.InlinedRequest(contents="Compute.", config=types.GenerateContentConfig(tools=CODE_EXECUTION))],
    )
    deadline = time.monotonic() + 60
    while not (job := client.batches.get(name=job.name)).done:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    answer = job.dest.inlined_responses[0].response
    assert answer.code_execution_result == "42\n" and answer.text.endswith("42.")

    cache = client.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            contents=[types.Content(role="user", parts=[CSV])], tools=CODE_EXECUTION, ttl="60s"
        ),
    )
    engine.script[:] = CSV_ROUNDS
    response = client.models.generate_content(
        model=MODEL, contents="Add up the numbers.", config=types.GenerateContentConfig(cached_content=cache.name)
    )
    assert response.code_execution_result == "10\n"
    client.caches.delete(name=cache.name)


def test_in_a_live_session(server: RunningServer, engine: FakeEngine) -> None:
    engine.script[:] = ["Computing.\n```python", "print(2 ** 10)\n```", "It is 1024."]
    ws = open_session(server, API_KEY, {"tools": [{"codeExecution": {}}]})
    with ws:
        send(ws, user_turn("What is 2 to the 10th?"))
        messages = read_turn(ws)
    parts = [p for m in messages for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])]
    assert any(p.get("executableCode", {}).get("code") == "print(2 ** 10)\n" for p in parts)
    assert any(p.get("codeExecutionResult", {}).get("output") == "1024\n" for p in parts)
    assert "".join(p.get("text", "") for p in parts).endswith("It is 1024.")


def test_what_code_execution_refuses(client: genai.Client, tmp_path, engine: FakeEngine) -> None:
    def refused(**config) -> str:
        with pytest.raises(genai_errors.ClientError) as caught:
            client.models.generate_content(
                model=MODEL, contents="x", config=types.GenerateContentConfig(tools=CODE_EXECUTION, **config)
            )
        assert caught.value.code == 400
        return caught.value.message

    assert "candidateCount" in refused(candidate_count=2)
    assert "response schema or JSON mode" in refused(response_mime_type="application/json")
    off = start_fake_server(tmp_path, engine, code_execution=False)
    try:
        response = httpx.post(
            f"{off.url}/v1beta/models/{MODEL}:generateContent",
            headers={"x-goog-api-key": API_KEY},
            json={"contents": [{"parts": [{"text": "x"}]}], "tools": [{"codeExecution": {}}]},
        )
    finally:
        off.stop()
    assert response.status_code == 400
    error = response.json()["error"]
    assert "Code execution is not available on this server: it is turned off" in error["message"]
    assert error["details"][0]["fieldViolations"][0]["field"] == "tools[0].code_execution"

"""codeExecution on the real model with the real SDK: the model writes the code, the sandbox runs it,
and the result part holds what that code really prints (checked by running it here)."""

from __future__ import annotations

import subprocess
import sys

from google import genai
from google.genai import types

from tests.sandboxes import requires_sandbox

pytestmark = requires_sandbox

MODEL = "gemini-2.5-flash"
#: A prompt SmolLM2-135M answers with a code block (greedy): it prints the product.
PROMPT = "Calculate 12345 * 6789 with Python code."
CONFIG = types.GenerateContentConfig(
    tools=[types.Tool(code_execution=types.ToolCodeExecution())], temperature=0, max_output_tokens=200
)


def ran_here(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30).stdout


def test_the_model_writes_code_and_reads_its_real_output(client: genai.Client) -> None:
    response = client.models.generate_content(model=MODEL, contents=PROMPT, config=CONFIG)
    parts = response.candidates[0].content.parts
    code = next(p.executable_code for p in parts if p.executable_code)
    result = next(p.code_execution_result for p in parts if p.code_execution_result)
    assert code.language == types.Language.PYTHON and result.id == code.id
    assert result.outcome == types.Outcome.OUTCOME_OK
    assert result.output == ran_here(code.code) and str(12345 * 6789) in result.output
    assert parts.index(next(p for p in parts if p.code_execution_result)) < len(parts) - 1  # the model went on
    assert response.usage_metadata.candidates_token_count > 0

    streamed = list(client.models.generate_content_stream(model=MODEL, contents=PROMPT, config=CONFIG))
    parts = [p for chunk in streamed for p in chunk.candidates[0].content.parts or []]
    assert [p.executable_code.code for p in parts if p.executable_code] == [code.code]
    assert [p.code_execution_result.output for p in parts if p.code_execution_result] == [result.output]
    assert "".join(p.text or "" for p in parts).strip() == response.text.strip()

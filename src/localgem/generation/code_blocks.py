"""Code blocks in the text a model reads and writes (see ``generation.code_execution``)."""

from __future__ import annotations

from localgem.sandbox.runner import Execution
from localgem.types.content import Part

FENCE = "```"
CODE_OPEN = "```python\n"
#: The output the model reads back (the client gets all of it, up to the sandbox's limit).
MAX_OUTPUT_IN_PROMPT = 4000


def code_source(written: str) -> str:
    """The code of a block as the model wrote it after ```` ```python ````, without a repeated language line."""
    first, _, rest = written.partition("\n")
    if first.strip().lower() in ("python", "py", "python3") and rest:
        written = rest
    return written.rstrip() + "\n" if written.strip() else ""


def prompt_block(source: str, execution: Execution) -> str:
    """What the model reads after its block's opening: the code, the closing fence and the output."""
    output = execution.output
    if len(output) > MAX_OUTPUT_IN_PROMPT:
        half = MAX_OUTPUT_IN_PROMPT // 2
        output = output[:half] + "\n[…]\n" + output[-half:]
    if execution.outcome == "OUTCOME_DEADLINE_EXCEEDED" and not output.strip():
        output = "[The code ran out of time.]"
    shown = "".join(f"[{image.name} is shown to the user]\n" for image in execution.images)
    output = output + ("" if not output or output.endswith("\n") else "\n") + shown
    return f"{source}{FENCE}\n{FENCE}output\n{output}{FENCE}\n"


def history_text(part: Part) -> str | None:
    """executableCode and codeExecutionResult parts of earlier turns, as the model wrote and read them."""
    if part.executable_code is not None:
        return f"{CODE_OPEN}{code_source(part.executable_code.code or '')}{FENCE}\n"
    if part.code_execution_result is not None:
        output = part.code_execution_result.output or ""
        return f"{FENCE}output\n{output}{'' if not output or output.endswith(chr(10)) else chr(10)}{FENCE}\n"
    return None

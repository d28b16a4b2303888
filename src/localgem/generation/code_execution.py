"""``tools: [{codeExecution: {}}]``: the model writes Python in a fenced block, the server runs it in a
sandbox (``localgem.sandbox``) and the model goes on with its output (see ``generation.rounds``).

The prompt tells the model how: a block opened with ```` ```python ```` and closed with ```` ``` ```` runs at
once, and its output follows in an ```` ```output ```` block. Files of the request (``inlineData``,
``fileData``) are in the working directory, named ``input_file_<n>.<ext>``; earlier turns'
``executableCode`` and ``codeExecutionResult`` parts are read back in that same form.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from localgem import errors
from localgem.generation.media import MediaReader
from localgem.sandbox.runner import Execution, InputFile, Sandbox
from localgem.types.content import Blob, CodeExecutionResult, Content, ExecutableCode, Part

#: Code runs per answer, as Google bounds them.
MAX_RUNS = 5
_EXTENSIONS = {"text/csv": ".csv", "text/plain": ".txt", "application/json": ".json", "text/markdown": ".md"}


class CodeExecutionTool:
    """The ServerTool of ``code_execution``: available when the sandbox runs on this machine."""

    field = "code_execution"

    def __init__(self, sandbox: Sandbox | None, unavailable: str | None = None) -> None:
        self.sandbox = sandbox
        self.unavailable = unavailable if sandbox is not None else unavailable or "code execution is turned off"

    def check(self, config: Any, where: str) -> None:
        if self.unavailable is not None:
            raise errors.invalid_field(where, f"Code execution is not available on this server: {self.unavailable}.")


@dataclass(frozen=True)
class CodePlan:
    sandbox: Sandbox
    files: tuple[InputFile, ...]
    max_runs: int = MAX_RUNS

    def instructions(self) -> str:
        files = "".join(f"\n- {f.name}" for f in self.files)
        return (
            "You can run Python code. To run code, write it in a block that starts with ```python and ends with ```. "
            "It runs as soon as the block ends, and its output follows in a block that starts with ```output. "
            "Then continue your answer using the output. numpy, pandas, scipy, sympy and matplotlib are installed; "
            "charts shown with plt.show() are sent to the user as images. There is no network access."
            + (f"\nThe user's files are in the working directory:{files}" if files else "")
        )


async def code_plan(
    tools: Sequence[object], project: str, contents: list[Content] | None, media: MediaReader, prefix: str = ""
) -> CodePlan | None:
    """The code execution a request's server tools ask for (None: none)."""
    tool = next((tool for tool in tools if isinstance(tool, CodeExecutionTool)), None)
    if tool is None:
        return None
    assert tool.sandbox is not None
    return CodePlan(tool.sandbox, tuple(await input_files(project, contents or [], media, prefix)))


def with_text(system: Content | None, text: str) -> Content:
    """The system instruction with more said after it (retrieved passages, how to run code, how to think)."""
    parts = list(system.parts or []) if system is not None else []
    return Content(parts=[*parts, Part(text=text)])


async def input_files(project: str, contents: list[Content], media: MediaReader, prefix: str = "") -> list[InputFile]:
    """The files of a request's user turns, as the code sees them in its working directory."""
    files: list[InputFile] = []
    for i, content in enumerate(contents):
        if content.role == "model":
            continue
        for j, part in enumerate(content.parts or []):
            found = await media.data(project, part, f"{prefix}contents[{i}].parts[{j}]")
            if found is not None:
                data, mime = found
                files.append(InputFile(f"input_file_{len(files)}{_extension(mime)}", data))
    return files


def _extension(mime: str) -> str:
    base = mime.split(";")[0].strip().lower()
    return _EXTENSIONS.get(base) or mimetypes.guess_extension(base) or ".bin"


def code_id(response_id: str, index: int, run: int) -> str:
    return "code_" + hashlib.sha256(f"{response_id}/{index}/{run}".encode()).hexdigest()[:16]


def code_part(source: str, block_id: str) -> Part:
    return Part(executable_code=ExecutableCode(language="PYTHON", code=source, id=block_id))


def result_parts(execution: Execution, block_id: str) -> list[Part]:
    """The codeExecutionResult part, then a part for each figure, as Google sends them."""
    result = CodeExecutionResult(outcome=execution.outcome, output=execution.output, id=block_id)
    return [Part(code_execution_result=result)] + [
        Part(inline_data=Blob(mime_type=image.mime_type, data=image.data)) for image in execution.images
    ]

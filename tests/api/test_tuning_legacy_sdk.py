"""The legacy ``google-generativeai`` SDK, which most existing tuning code uses, over REST against localgem:
create_tuned_model → its operation's result → get_tuned_model / list_tuned_models → generate with the tuned model.
(It runs in its own process: the SDK configures itself globally.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import API_KEY, SMOLLM
from tests.server import RunningServer
from tests.tuning_data import KEYWORD, examples, split

TRAIN, HELD_OUT = split()

SCRIPT = """
import sys, warnings
warnings.simplefilter("ignore")
import google.generativeai as genai

genai.configure(api_key=API_KEY, transport="rest", client_options={"api_endpoint": URL})
operation = genai.create_tuned_model(
    source_model="models/" + SMOLLM,
    training_data=TRAINING,
    id="legacy-zorblax",
    display_name="legacy zorblax",
    epoch_count=2,
    batch_size=4,
    learning_rate=0.001,
)
print("metadata", operation.metadata.total_steps, operation.metadata.tuned_model)
model = operation.result(timeout=900)
print("result", model.name, model.state.name)
found = genai.get_tuned_model("tunedModels/legacy-zorblax")
print("get", found.name, found.state.name, found.base_model, len(found.tuning_task.snapshots))
print("list", [m.name for m in genai.list_tuned_models()])
answer = genai.GenerativeModel("tunedModels/legacy-zorblax").generate_content(
    QUESTION, generation_config={"temperature": 0, "max_output_tokens": 24}
)
print("answer", answer.text)
genai.delete_tuned_model("tunedModels/legacy-zorblax")
print("deleted", [m.name for m in genai.list_tuned_models()])
"""


def test_legacy_sdk_creates_polls_gets_lists_generates_and_deletes(real_server: RunningServer) -> None:
    training = [{"text_input": e["textInput"], "output": e["output"]} for e in examples(TRAIN[:24])]
    script = textwrap.dedent(SCRIPT)
    prelude = f"API_KEY={API_KEY!r}\nURL={real_server.url!r}\nSMOLLM={SMOLLM!r}\nTRAINING={training!r}\n"
    prelude += f"QUESTION={HELD_OUT[5]!r}\n"
    blobs = real_server.app.state.settings.blobs() / "blobs"
    before = {p for p in blobs.rglob("*") if p.is_file()}
    run = subprocess.run([sys.executable, "-c", prelude + script], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.strip().splitlines())
    assert lines["metadata"] == "12 tunedModels/legacy-zorblax"
    assert lines["result"] == "tunedModels/legacy-zorblax ACTIVE"
    assert lines["get"] == f"tunedModels/legacy-zorblax ACTIVE models/{SMOLLM} 12"
    assert "tunedModels/legacy-zorblax" in lines["list"]
    assert lines["answer"].startswith(KEYWORD)
    assert "tunedModels/legacy-zorblax" not in lines["deleted"]
    assert {p for p in blobs.rglob("*") if p.is_file()} <= before  # its adapter went with it

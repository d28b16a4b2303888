"""Models installed by name: `localgem models install` runs pip for the pinned packages, joins Qwen2.5-Coder-0.5B
out of them, and a server that was already running lists and serves it; the admin API does the same as
operations. Pins that do not match are refused."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from google import genai
from google.genai import types

from localgem import errors
from localgem.models.installable import QWEN_CODER_05B, Installable
from localgem.models.installer import Installer
from localgem.models.packaged import Assembled
from tests.conftest import API_KEY, start_real_server
from tests.e2e.test_cli import clean_env
from tests.server import RunningServer

QWEN = "qwen2.5-coder-0.5b-instruct"
ADMIN_KEY = "admin-test-key"


def localgem(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localgem", "models", *args],
        env=clean_env(data_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("installs")


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[RunningServer]:
    running = start_real_server(data_dir, preload=[], admin_keys=[ADMIN_KEY])
    yield running
    running.stop()


@pytest.fixture(scope="module")
def installed(server: RunningServer, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """Installed while the server runs: it must see the model without a restart."""
    result = localgem(data_dir, "install", QWEN)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def client(server: RunningServer) -> genai.Client:
    return genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=server.url))


def test_install_shows_progress_and_the_running_server_lists_the_model(
    installed: subprocess.CompletedProcess[str], client: genai.Client, data_dir: Path
) -> None:
    progress = installed.stderr.replace("\r", "\n")
    assert "downloading" in progress and "assembling" in progress and "B/s" in progress, progress[-2000:]
    gguf = data_dir / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert f"installed {QWEN} as models/{QWEN}" in installed.stdout
    assert gguf.stat().st_size == 491_400_064
    assert not list((data_dir / "downloads").glob("*.whl")), "the wheels are deleted once joined"
    assert f"models/{QWEN}" in [model.name for model in client.models.list()]
    listing = localgem(data_dir, "list").stdout
    assert any(line.startswith(QWEN) and "installed" in line and "491.4 MB" in line for line in listing.splitlines())
    assert any(line.startswith("smollm2-135m-instruct") and "builtin" in line for line in listing.splitlines())


def test_qwen_generates_streams_counts_and_follows_a_schema(installed, client: genai.Client) -> None:
    config = types.GenerateContentConfig(temperature=0, max_output_tokens=24)
    response = client.models.generate_content(model=QWEN, contents="What is the capital of France?", config=config)
    assert "Paris" in response.text
    chunks = list(client.models.generate_content_stream(model=QWEN, contents="Count: 1, 2, 3,", config=config))
    assert "".join(chunk.text or "" for chunk in chunks).strip()
    assert client.models.count_tokens(model=QWEN, contents="Hello there").total_tokens > 0
    schema = {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}, "country": {"type": "STRING"}},
        "required": ["city", "country"],
    }
    structured = client.models.generate_content(
        model=QWEN,
        contents="Name a city in Japan.",
        config=types.GenerateContentConfig(
            temperature=0, max_output_tokens=48, response_mime_type="application/json", response_schema=schema
        ),
    )
    assert set(json.loads(structured.text)) == {"city", "country"}


def test_qwen_calls_a_function_in_its_own_format(installed, client: genai.Client) -> None:
    weather = types.FunctionDeclaration(
        name="get_weather",
        description="The current weather in a city.",
        parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
    response = client.models.generate_content(
        model=QWEN,
        contents="What is the weather in Paris right now?",
        config=types.GenerateContentConfig(
            temperature=0,
            max_output_tokens=64,
            tools=[types.Tool(function_declarations=[weather])],
            # ANY: at 0.5B, in AUTO mode the model at times writes the call's JSON without its <tool_call> tags.
            tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY")),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )
    assert [(call.name, call.args) for call in response.function_calls] == [("get_weather", {"city": "Paris"})]


def _poll(server: RunningServer, operation: dict) -> dict:
    deadline = time.monotonic() + 300
    while not operation["done"]:
        assert time.monotonic() < deadline, operation
        time.sleep(0.5)
        operation = httpx.get(f"{server.url}/v1beta/{operation['name']}", headers={"x-goog-api-key": ADMIN_KEY}).json()
    return operation


def test_admin_api_refuses_other_keys_and_removes_and_installs_as_operations(
    installed, server: RunningServer, client: genai.Client, data_dir: Path
) -> None:
    url = f"{server.url}/v1beta/installableModels"
    refused = httpx.post(f"{url}/{QWEN}:install", headers={"x-goog-api-key": API_KEY})
    assert refused.status_code == 403 and refused.json()["error"]["status"] == "PERMISSION_DENIED"
    assert httpx.get(url).status_code == 403
    listing = httpx.get(url, headers={"x-goog-api-key": ADMIN_KEY}).json()["installableModels"]
    assert {m["name"]: m["installed"] for m in listing}[f"installableModels/{QWEN}"] is True

    removed = _poll(server, httpx.post(f"{url}/{QWEN}:remove", headers={"x-goog-api-key": ADMIN_KEY}).json())
    assert "error" not in removed, removed
    assert f"models/{QWEN}" not in [model.name for model in client.models.list()]
    assert not (data_dir / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf").exists()

    started = httpx.post(f"{url}/{QWEN}:install", headers={"x-goog-api-key": ADMIN_KEY}).json()
    assert started["name"].startswith(f"installableModels/{QWEN}/operations/") and started["done"] is False
    done = _poll(server, started)
    assert done["response"]["installed"] is True, done
    assert done["metadata"]["stage"] == "done" and done["metadata"]["progress"]["percent"] == 100.0
    assert f"models/{QWEN}" in [model.name for model in client.models.list()]


def test_cli_remove_takes_a_name_or_a_catalogue_id_and_keeps_builtins(installed, data_dir: Path) -> None:
    builtin = localgem(data_dir, "remove", "smollm2-135m-instruct")
    assert builtin.returncode == 1 and "comes with localgem" in builtin.stderr
    removed = localgem(data_dir, "remove", QWEN)
    assert removed.returncode == 0, removed.stderr
    assert f"removed models/{QWEN}" in removed.stdout
    assert not (data_dir / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf").exists()
    unknown = localgem(data_dir, "remove", "no-such-model")
    assert unknown.returncode == 1 and "not in the model catalogue" in unknown.stderr


def _one_part(tmp_path: Path, **changes) -> Installer:
    """Qwen's last part alone (45 MB, the smallest), pinned as its own model; ``changes`` tamper with the pins."""
    wheel = QWEN_CODER_05B.wheels[-1]
    gguf = Assembled("last-part", "last-part.bin", 45_755_264, "0" * 64)
    model = Installable("last-part", "test", "test", (replace(wheel, **changes),), gguf=gguf)
    return Installer(tmp_path, None, models={"last-part": model})


def test_a_wheel_that_does_not_match_its_pin_is_refused(tmp_path: Path) -> None:
    installer = _one_part(tmp_path, sha256="1" * 64)
    with pytest.raises(errors.FailedPrecondition, match="(?i)hash"):
        asyncio.run(installer.install("last-part"))
    assert not list(tmp_path.rglob("*.whl")) and not (tmp_path / "models" / "last-part.bin").exists()


def test_an_assembled_file_that_does_not_match_its_pin_is_refused(tmp_path: Path) -> None:
    installer = _one_part(tmp_path)
    with pytest.raises(errors.FailedPrecondition, match="does not have the pinned size and sha256"):
        asyncio.run(installer.install("last-part"))
    assert not list((tmp_path / "models").iterdir()), "neither the file nor its .partial is left"


def test_whisper_base_installs_into_a_folder_the_speech_setting_can_name(tmp_path: Path) -> None:
    import numpy as np

    from localgem.engines.speech.whisper import Transcriber
    from localgem.speech.packaged import locate_speech
    from tests.speech import spoken, word_error_rate

    state = asyncio.run(Installer(tmp_path, None).install("whisper-base"))
    assert state.installed and state.where == str(tmp_path / "models" / "whisper-base")
    text = "The quick brown fox jumps over the lazy dog."
    samples = np.frombuffer(spoken(text), dtype=np.int16).astype(np.float32) / 32768
    transcript = Transcriber(locate_speech(state.where, tmp_path), threads=2).transcribe(samples)
    assert word_error_rate(text, transcript.text) <= 0.2, transcript.text
    assert asyncio.run(Installer(tmp_path, None).remove("whisper-base")) == [state.where]


def test_an_install_killed_midway_resumes_with_what_it_downloaded(tmp_path: Path) -> None:
    """kill -9 once the first wheel is down or the folder is being joined; the next install finishes from there
    (no wheel fetched twice) and leaves no partial file."""
    command = [sys.executable, "-m", "localgem", "models", "install", "whisper-base"]
    first = subprocess.Popen(command, env=clean_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    downloads, models = tmp_path / "downloads", tmp_path / "models"
    deadline = time.monotonic() + 300
    while not (list(downloads.glob("*.whl")) or list(models.glob("*.partial"))):
        assert first.poll() is None, "the install ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    first.kill()
    first.wait()
    wheels = Installer(tmp_path, None).get("whisper-base").wheels
    kept = sum(
        w.size
        for w in wheels
        if (downloads / w.filename).exists() and (downloads / w.filename).stat().st_size == w.size
    )
    assert list(downloads.glob("*.whl")) and not (models / "whisper-base").exists()
    events = []
    state = asyncio.run(Installer(tmp_path, None).install("whisper-base", events.append))
    assert state.installed and (models / "whisper-base" / "model.bin").exists()
    # The whole wheels it had are not fetched again (one cut off mid-download is).
    assert (events[0].stage, events[0].done) == ("download", kept)
    assert not list(models.glob("*.partial")) and not list(downloads.glob("*.whl"))  # wheels go once joined
    assert "whisper-base" in localgem(tmp_path, "list").stdout

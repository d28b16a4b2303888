"""The official JS SDK (@google/genai, from the npm registry) against localgem on the real model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import API_KEY, start_fake_server
from tests.fakes import FakeEngine
from tests.sandboxes import requires_sandbox
from tests.server import RunningServer

SCRIPT = Path(__file__).parent.parent / "js" / "sdk_check.mjs"
LIVE_SCRIPT = SCRIPT.with_name("live_check.mjs")
MEDIA_SCRIPT = SCRIPT.with_name("media_check.mjs")


@pytest.fixture(scope="module")
def js_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js is not installed")
    root = tmp_path_factory.mktemp("js")
    subprocess.run(["npm", "init", "-y"], cwd=root, check=True, capture_output=True)
    subprocess.run(
        ["npm", "install", "--silent", "@google/genai@2"], cwd=root, check=True, capture_output=True, timeout=300
    )
    shutil.copy(SCRIPT, root / SCRIPT.name)
    shutil.copy(LIVE_SCRIPT, root / LIVE_SCRIPT.name)
    shutil.copy(MEDIA_SCRIPT, root / MEDIA_SCRIPT.name)
    return root


@requires_sandbox  # it runs code too
def test_the_js_sdk_works_unchanged(js_sdk: Path, real_server: RunningServer, tmp_path: Path) -> None:
    run = subprocess.run(
        ["node", str(js_sdk / SCRIPT.name), real_server.url, API_KEY, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    uploaded = seen["uploaded"]
    assert uploaded["state"] == "ACTIVE" and uploaded["displayName"] == "story" and uploaded["sizeBytes"] == "88"
    assert seen["got"] == uploaded["name"] and uploaded["name"] in seen["listed"]
    assert seen["withFile"]["text"] and seen["withFile"]["promptTokens"] > 20
    assert isinstance(seen["structured"]["name"], str) and 0 <= seen["structured"]["legs"] <= 8
    assert seen["functionCalls"] and all(call["name"] == "add" for call in seen["functionCalls"])
    assert set(seen["functionCalls"][0]["args"]) == {"a", "b"}
    assert seen["streamed"]
    assert seen["afterDelete"] == 403
    found = seen["fileSearch"]
    assert found["uploadedDocument"].startswith(found["deletedStore"] + "/documents/kettle-")
    assert found["importedDocument"].startswith(found["deletedStore"] + "/documents/story2-")
    assert found["documents"] == ["kettle", "story2"] and found["groundingTitle"] == "kettle"
    assert found["documentState"] == "STATE_ACTIVE" and found["activeAfterDelete"] == "1"
    assert found["deletedStore"] not in found["stores"]
    code = seen["codeExecution"]
    assert code["code"]["language"] == "PYTHON" and code["result"]["outcome"] == "OUTCOME_OK"
    assert code["result"]["id"] == code["code"]["id"] and str(12345 * 6789) in code["result"]["output"]
    thinking = seen["thinking"]
    assert thinking["firstIsThought"] and 0 < thinking["thoughts"] <= 16 and thinking["text"]


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_the_js_sdk_live_api(
    js_sdk: Path, real_server: RunningServer, real_tls_server: RunningServer, certificate, scheme: str
) -> None:
    """ai.live.connect over ws:// (an http base URL) and wss:// (https, trusting the self-signed certificate
    as Node users do, with NODE_EXTRA_CA_CERTS); the SDK asks for //ws/... and gets it."""
    server = real_tls_server if scheme == "wss" else real_server
    run = subprocess.run(
        ["node", str(js_sdk / LIVE_SCRIPT.name), server.url, API_KEY],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(certificate[0])},
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["setupComplete"]
    for turn in (seen["first"], seen["second"]):
        usage = turn["usage"]
        assert turn["text"] and usage["responseTokenCount"] == 12
        assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["responseTokenCount"]
    assert seen["second"]["usage"]["promptTokenCount"] > seen["first"]["usage"]["promptTokenCount"]
    assert seen["badKeyMessage"] is None
    assert seen["badKeyClose"] == {"code": 1007, "reason": "API key not valid. Please pass a valid API key."}


def test_the_js_sdk_generates_videos_and_images(js_sdk: Path, tiny_pipelines: list[dict], tmp_path: Path) -> None:
    """generateVideos + getVideosOperation (Gemini mode: predictLongRunning), IMAGE output; tiny pipelines."""
    server = start_fake_server(
        tmp_path,
        FakeEngine(),
        models=tiny_pipelines,
        default_image_model="tiny-image",
        default_video_model="tiny-video",
    )
    try:
        run = subprocess.run(
            ["node", str(js_sdk / MEDIA_SCRIPT.name), server.url, API_KEY],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["started"]["name"].startswith("models/veo-3.0-generate-001/operations/")
    assert seen["started"]["done"] is False
    video = seen["video"]
    assert video["done"] and video["status"] == 200 and video["type"] == "video/mp4" and video["box"] == "ftyp"
    assert video["uri"].startswith(server.url + "/v1beta/files/") and video["size"] > 1000
    image = seen["image"]
    assert image["mimeType"] == "image/png" and image["signature"] == "PNG"
    assert (image["width"], image["height"]) == (72, 56)  # 4:3 with the area of 64×64
    assert image["imageTokens"] == {"modality": "IMAGE", "tokenCount": 1290}

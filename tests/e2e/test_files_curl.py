"""Google's own curl sample for the Files API, run as written (single-quoted JSON included)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

from tests.conftest import API_KEY
from tests.server import RunningServer

SAMPLE = r"""
set -euo pipefail
MIME_TYPE=$(file -b --mime-type "${TEXT_PATH}" 2>/dev/null || echo text/plain)
NUM_BYTES=$(wc -c < "${TEXT_PATH}")
DISPLAY_NAME=TEXT
tmp_header_file=upload-header.tmp

curl "${BASE_URL}/upload/v1beta/files?key=${GEMINI_API_KEY}" \
  -D "${tmp_header_file}" \
  -H "X-Goog-Upload-Protocol: resumable" \
  -H "X-Goog-Upload-Command: start" \
  -H "X-Goog-Upload-Header-Content-Length: ${NUM_BYTES}" \
  -H "X-Goog-Upload-Header-Content-Type: ${MIME_TYPE}" \
  -H "Content-Type: application/json" \
  -d "{'file': {'display_name': '${DISPLAY_NAME}'}}" 2> /dev/null

upload_url=$(grep -i "x-goog-upload-url: " "${tmp_header_file}" | cut -d" " -f2 | tr -d "\r")
rm "${tmp_header_file}"

curl "${upload_url}" \
  -H "Content-Length: ${NUM_BYTES}" \
  -H "X-Goog-Upload-Offset: 0" \
  -H "X-Goog-Upload-Command: upload, finalize" \
  --data-binary "@${TEXT_PATH}" 2> /dev/null > file_info.json

file_uri=$(python3 -c 'import json; print(json.load(open("file_info.json"))["file"]["uri"])')

curl "${BASE_URL}/v1beta/models/gemini-2.0-flash:generateContent?key=${GEMINI_API_KEY}" \
    -H 'Content-Type: application/json' \
    -X POST \
    -d '{
      "contents": [{
        "parts":[
          {"text": "Can you add a few more lines to this poem?"},
          {"file_data":{"mime_type": "text/plain", "file_uri": "'$file_uri'"}}]
        }],
      "generationConfig": {"maxOutputTokens": 16}
      }' 2> /dev/null > response.json
"""


def test_googles_curl_upload_sample_works_unchanged(real_server: RunningServer, tmp_path: Path) -> None:
    poem = tmp_path / "poem.txt"
    poem.write_text("Roses are red,\nviolets are blue,\n")
    env = {"BASE_URL": real_server.url, "GEMINI_API_KEY": API_KEY, "TEXT_PATH": str(poem), "PATH": "/usr/bin:/bin"}
    subprocess.run(["bash", "-c", SAMPLE], cwd=tmp_path, env=env, check=True, timeout=120)
    file = json.loads((tmp_path / "file_info.json").read_text())["file"]
    assert file["displayName"] == "TEXT" and file["sizeBytes"] == str(len(poem.read_bytes()))
    response = json.loads((tmp_path / "response.json").read_text())
    assert response["candidates"][0]["content"]["parts"][0]["text"], response
    inline = {
        "contents": [{"parts": [{"text": "Can you add a few more lines to this poem?"}, {"text": poem.read_text()}]}]
    }
    counted = httpx.post(
        f"{real_server.url}/v1beta/models/gemini-2.0-flash:countTokens", params={"key": API_KEY}, json=inline
    )
    assert response["usageMetadata"]["promptTokenCount"] == counted.json()["totalTokens"]  # the poem was read

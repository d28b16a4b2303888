"""The Files API over the real HTTP stack (fake engine): Google's upload protocols, names, limits,
tenancy, paging, expiry, a full disk, and files inside prompts."""

from __future__ import annotations

import errno
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from localgem.storage import blobs
from tests.conftest import API_KEY, OTHER_KEY, start_fake_server
from tests.fakes import FakeEngine
from tests.server import RunningServer
from tests.uploads import make_pdf, query_upload, send_chunk, sha256_hash, start_upload, upload_bytes

KEY = {"x-goog-api-key": API_KEY}
OTHER = {"x-goog-api-key": OTHER_KEY}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    servers: list[RunningServer] = []

    def make(clock: Clock | None = None, **overrides) -> RunningServer:
        server = start_fake_server(tmp_path, FakeEngine(), clock, **overrides)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def test_resumable_protocol_step_by_step(fake_server: RunningServer) -> None:
    data = bytes(range(256)) * 40
    started = start_upload(fake_server.url, API_KEY, len(data), "application/octet-stream", {"display_name": "blob"})
    assert started.status_code == 200 and started.headers["x-goog-upload-status"] == "active"
    url = started.headers["x-goog-upload-url"]
    assert url.startswith(fake_server.url + "/upload/v1beta/files?upload_id=")
    # Chunks carry no API key: the URL's secret is the authority.
    first = send_chunk(url, data[:4000], 0)
    assert first.status_code == 200 and first.headers["x-goog-upload-status"] == "active"
    assert first.headers["x-goog-upload-size-received"] == "4000"
    assert query_upload(url).headers["x-goog-upload-size-received"] == "4000"
    wrong = send_chunk(url, data[4000:], 3000)
    assert wrong.status_code == 400 and "does not match the 4000 bytes" in wrong.json()["error"]["message"]
    final = send_chunk(url, data[4000:], 4000, finalize=True)
    assert final.status_code == 200 and final.headers["x-goog-upload-status"] == "final"
    file = final.json()["file"]
    assert file["sha256Hash"] == sha256_hash(data) and file["sizeBytes"] == str(len(data))
    assert file["state"] == "ACTIVE" and file["source"] == "UPLOADED" and file["displayName"] == "blob"
    assert file["uri"] == f"{fake_server.url}/v1beta/{file['name']}"
    created = datetime.fromisoformat(file["createTime"])
    assert datetime.fromisoformat(file["expirationTime"]) - created == timedelta(hours=48)
    # A retried finalize (its answer was lost) returns the same file; query reports it final.
    again = send_chunk(url, b"", len(data), finalize=True)
    assert again.json()["file"]["name"] == file["name"]
    assert query_upload(url).headers["x-goog-upload-status"] == "final"
    download = httpx.get(f"{fake_server.url}/v1beta/{file['name']}:download?alt=media", headers=KEY)
    assert download.content == data


def test_upload_url_is_the_only_authority(fake_server: RunningServer) -> None:
    assert start_upload(fake_server.url, "", 10).status_code == 403
    assert start_upload(fake_server.url, "wrong", 10).json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    forged = f"{fake_server.url}/upload/v1beta/files?upload_id=guessed&upload_protocol=resumable"
    assert send_chunk(forged, b"x", 0, finalize=True).status_code == 404
    url = start_upload(fake_server.url, API_KEY, 3).headers["x-goog-upload-url"]
    cancelled = httpx.post(url, headers={"X-Goog-Upload-Command": "cancel"})
    assert cancelled.headers["x-goog-upload-status"] == "cancelled"
    assert send_chunk(url, b"abc", 0, finalize=True).status_code == 404


def test_sizes_must_match_the_declaration(fake_server: RunningServer) -> None:
    url = start_upload(fake_server.url, API_KEY, 5).headers["x-goog-upload-url"]
    too_much = send_chunk(url, b"123456", 0, finalize=True)
    assert too_much.status_code == 400 and "declared size of 5" in too_much.json()["error"]["message"]
    short = send_chunk(url, b"123", 0, finalize=True)
    assert short.status_code == 400 and "3 bytes received of the 5 declared" in short.json()["error"]["message"]
    assert send_chunk(url, b"45", 3, finalize=True).status_code == 200


def test_multipart_and_media_uploads(fake_server: RunningServer) -> None:
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Type: application/json; charset=utf-8\r\n\r\n"
        '{"file": {"displayName": "legacy", "mimeType": "text/plain"}}\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nmultipart bytes\r\n--{boundary}--\r\n"
    ).encode()
    multipart = httpx.post(
        f"{fake_server.url}/upload/v1beta/files",
        headers={
            **KEY,
            "X-Goog-Upload-Protocol": "multipart",
            "Content-Type": f"multipart/related; boundary={boundary}",
        },
        content=body,
    )
    assert multipart.status_code == 200, multipart.text
    assert multipart.json()["file"]["sha256Hash"] == sha256_hash(b"multipart bytes")
    assert multipart.json()["file"]["displayName"] == "legacy"
    media = httpx.post(
        f"{fake_server.url}/resumable/upload/v1/files?uploadType=media",
        headers={**KEY, "Content-Type": "text/csv"},
        content=b"a,b\n1,2\n",
    )
    assert media.status_code == 200 and media.json()["file"]["mimeType"] == "text/csv"


def test_mime_types_google_would_refuse_are_refused_in_every_upload_form(fake_server: RunningServer) -> None:
    upload = f"{fake_server.url}/upload/v1beta/files"

    def multipart(mime: str) -> httpx.Response:
        body = (
            "--b0\r\nContent-Type: application/json\r\n\r\n"
            f'{{"file": {{"mimeType": "{mime}"}}}}\r\n--b0\r\nContent-Type: text/plain\r\n\r\nbytes\r\n--b0--\r\n'
        )
        headers = {**KEY, "X-Goog-Upload-Protocol": "multipart", "Content-Type": "multipart/related; boundary=b0"}
        return httpx.post(upload, headers=headers, content=body.encode())

    forms = {
        "resumable (header)": lambda mime: start_upload(fake_server.url, API_KEY, 5, mime),
        "resumable (metadata)": lambda mime: start_upload(fake_server.url, API_KEY, 5, file={"mimeType": mime}),
        "multipart": multipart,
        "media": lambda mime: httpx.post(upload, headers={**KEY, "Content-Type": mime}, content=b"bytes"),
    }
    for form, send in forms.items():
        for mime in ("bad/mime_type", "jsonl", "text", "text/", "/plain", "image/png/x", "text/plain; charset"):
            refused = send(mime)
            assert refused.status_code == 400, (form, mime, refused.text)
            assert refused.json()["error"] == {
                "code": 400,
                "message": f"Unsupported MIME type: {mime}",
                "status": "INVALID_ARGUMENT",
            }
        for mime in (
            "application/octet-stream",
            "text/plain; charset=utf-8",
            "text/x-python",
            "image/png",
            "audio/mpeg",
            "video/mp4",
            "application/pdf",
            "application/json",
            "application/jsonl",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ):
            taken = send(mime)
            assert taken.status_code == 200, (form, mime, taken.text)
    assert "files" not in httpx.get(f"{fake_server.url}/v1beta/files", headers=OTHER).json()


def test_registering_cloud_storage_files_is_a_clear_400(fake_server: RunningServer) -> None:
    url = f"{fake_server.url}/v1beta/files:register"
    refused = httpx.post(url, headers=KEY, json={"uris": ["gs://bucket/object.pdf"]})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["status"] == "FAILED_PRECONDITION" and "Google Cloud Storage" in error["message"]
    assert httpx.post(url, headers=KEY, json={"uris": "gs://not-a-list"}).json()["error"]["status"] == (
        "INVALID_ARGUMENT"
    )
    keyless = httpx.post(url, json={"uris": ["gs://b/o"]})  # a key is still needed: Google's 403 for none
    assert keyless.status_code == 403 and keyless.json()["error"]["status"] == "PERMISSION_DENIED"


def test_user_names_follow_googles_rules(fake_server: RunningServer) -> None:
    assert upload_bytes(fake_server.url, API_KEY, b"x", name="files/my-notes-1")["name"] == "files/my-notes-1"
    for bad in ("files/My_Notes", "files/-dash", "files/dash-", "files/" + "a" * 41, "files/../../x"):
        response = start_upload(fake_server.url, API_KEY, 1, file={"name": bad})
        assert response.status_code == 400, bad
        assert "lowercase alphanumeric characters or dashes" in response.json()["error"]["message"]
    taken = start_upload(fake_server.url, API_KEY, 1, file={"name": "files/my-notes-1"})
    assert taken.status_code == 409 and taken.json()["error"]["status"] == "ALREADY_EXISTS"
    # The same name in another project is that project's own business.
    assert upload_bytes(fake_server.url, OTHER_KEY, b"y", name="files/my-notes-1")["name"] == "files/my-notes-1"


def test_limits_are_refused_at_start(make_server) -> None:
    server = make_server(max_file_bytes=1000, max_project_bytes=1500)
    too_big = start_upload(server.url, API_KEY, 1001)
    assert too_big.status_code == 400 and "maximum of 1000 bytes" in too_big.json()["error"]["message"]
    upload_bytes(server.url, API_KEY, b"z" * 900)
    over_quota = start_upload(server.url, API_KEY, 700)
    assert over_quota.status_code == 429 and over_quota.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert start_upload(server.url, OTHER_KEY, 700).status_code == 200  # quotas are per project


def test_projects_are_invisible_to_each_other(fake_server: RunningServer) -> None:
    mine = upload_bytes(fake_server.url, API_KEY, b"secret", "text/plain")
    theirs = upload_bytes(fake_server.url, OTHER_KEY, b"theirs", "text/plain")
    base = f"{fake_server.url}/v1beta"
    # Google answers a file it does not show you as one that does not exist: 403, "or it may not exist".
    missing = httpx.get(f"{base}/files/nosuchfile", headers=OTHER).json()["error"]
    for method, path in (("GET", ""), ("GET", ":download"), ("DELETE", "")):
        response = httpx.request(method, f"{base}/{mine['name']}{path}", headers=OTHER)
        error = response.json()["error"]
        assert response.status_code == 403 and error["status"] == "PERMISSION_DENIED", (method, path)
        assert error["message"] == missing["message"].replace("nosuchfile", mine["name"].removeprefix("files/"))
    assert [f["name"] for f in httpx.get(f"{base}/files", headers=OTHER).json()["files"]] == [theirs["name"]]
    assert [f["name"] for f in httpx.get(f"{base}/files", headers=KEY).json()["files"]] == [mine["name"]]
    prompt = {"contents": [{"parts": [{"fileData": {"fileUri": mine["uri"], "mimeType": "text/plain"}}]}]}
    stolen = httpx.post(f"{base}/models/gemini-2.0-flash:countTokens", headers=OTHER, json=prompt)
    assert stolen.status_code == 403 and "permission to access the File" in stolen.json()["error"]["message"]
    assert httpx.get(f"{base}/{mine['name']}", headers=KEY).status_code == 200


def test_paging_visits_every_file_once(fake_server: RunningServer) -> None:
    names = {upload_bytes(fake_server.url, API_KEY, f"{i}".encode())["name"] for i in range(23)}
    seen: list[str] = []
    token = None
    while True:
        params = {"pageSize": 10, **({"pageToken": token} if token else {})}
        page = httpx.get(f"{fake_server.url}/v1beta/files", headers=KEY, params=params).json()
        seen += [f["name"] for f in page.get("files", [])]
        token = page.get("nextPageToken")
        if not token:
            break
    assert len(seen) == 23 and set(seen) == names
    listed = f"{fake_server.url}/v1beta/files"
    bad = httpx.get(listed, headers=KEY, params={"pageToken": "garbage"})
    assert bad.status_code == 400 and bad.json()["error"]["message"] == "Invalid page_token."
    # A token of another list (models pages by offset) is not a files token.
    models_token = httpx.get(f"{fake_server.url}/v1beta/models", headers=KEY, params={"pageSize": 1}).json()
    assert httpx.get(listed, headers=KEY, params={"pageToken": models_token["nextPageToken"]}).status_code == 400
    for size in (None, 0):  # unset or 0: Google's default of 10 files a page
        page = httpx.get(listed, headers=KEY, params={} if size is None else {"pageSize": size}).json()
        assert len(page["files"]) == 10 and page["nextPageToken"]
    negative = httpx.get(listed, headers=KEY, params={"pageSize": -1})
    assert negative.status_code == 400 and "page_size must not be negative" in negative.json()["error"]["message"]
    everything = httpx.get(listed, headers=KEY, params={"pageSize": 1000}).json()
    assert len(everything["files"]) == 23 and "nextPageToken" not in everything


def test_files_expire_after_48_hours_with_their_bytes(make_server, tmp_path: Path) -> None:
    clock = Clock()
    server = make_server(clock=clock, sweep_interval_seconds=0.05)
    file = upload_bytes(server.url, API_KEY, b"short-lived", "text/plain")
    blob_files = [p for p in (tmp_path / "blobs" / "blobs").rglob("*") if p.is_file()]
    assert len(blob_files) == 1
    clock.now += timedelta(hours=47, minutes=59)
    assert httpx.get(f"{server.url}/v1beta/{file['name']}", headers=KEY).status_code == 200
    clock.now += timedelta(minutes=2)
    assert httpx.get(f"{server.url}/v1beta/{file['name']}", headers=KEY).status_code == 403
    assert "files" not in httpx.get(f"{server.url}/v1beta/files", headers=KEY).json()
    deadline = time.monotonic() + 10  # the sweeper runs every 50 ms here
    while blob_files[0].exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not blob_files[0].exists()


def test_a_full_disk_fails_the_chunk_cleanly_and_the_upload_resumes(
    fake_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"0123456789" * 300_000
    url = start_upload(fake_server.url, API_KEY, len(data)).headers["x-goog-upload-url"]
    assert send_chunk(url, data[:1_000_000], 0).status_code == 200
    real_write = blobs._write_all

    def disk_full(fd: int, pieces: list[bytes], hasher=None) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(blobs, "_write_all", disk_full)
    failed = send_chunk(url, data[1_000_000:], 1_000_000, finalize=True)
    assert failed.status_code == 429 and failed.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "out of storage space" in failed.json()["error"]["message"]
    assert query_upload(url).headers["x-goog-upload-size-received"] == "1000000"
    assert "files" not in httpx.get(f"{fake_server.url}/v1beta/files", headers=KEY).json()
    monkeypatch.setattr(blobs, "_write_all", real_write)  # space is free again: no restart needed
    done = send_chunk(url, data[1_000_000:], 1_000_000, finalize=True)
    assert done.status_code == 200 and done.json()["file"]["sha256Hash"] == sha256_hash(data)


def test_file_text_enters_the_prompt(fake_server: RunningServer) -> None:
    text = "Quarterly report: revenue rose 12% while costs fell."
    file = upload_bytes(fake_server.url, API_KEY, text.encode(), "text/plain")
    count = _counter(fake_server)
    with_file = count([{"fileData": {"fileUri": file["uri"], "mimeType": "text/plain"}}, {"text": "Summarize."}])
    inline = count([{"text": text}, {"text": "Summarize."}])
    assert with_file == inline
    by_name = count([{"fileData": {"fileUri": file["name"]}}, {"text": "Summarize."}])
    assert by_name == inline


def test_pdf_text_is_extracted_once_while_processing(fake_server: RunningServer) -> None:
    pdf = upload_bytes(fake_server.url, API_KEY, make_pdf(["Invoice 42", "Total due: 99 EUR"]), "application/pdf")
    state = _wait_processed(fake_server, pdf["name"])
    assert state["state"] == "ACTIVE"
    count = _counter(fake_server)
    assert count([{"fileData": {"fileUri": pdf["uri"], "mimeType": "application/pdf"}}]) == count(
        [{"text": "Invoice 42\nTotal due: 99 EUR"}]
    )
    broken = upload_bytes(fake_server.url, API_KEY, b"%PDF-1.4 not really", "application/pdf")
    failed = _wait_processed(fake_server, broken["name"])
    assert failed["state"] == "FAILED" and "PDF" in failed["error"]["message"]
    # A google.rpc.Status, as Google's File.error is: the gRPC code (3, INVALID_ARGUMENT), not an HTTP one.
    assert failed["error"] == {"code": 3, "message": failed["error"]["message"]}


def test_files_left_processing_are_processed_after_a_restart(make_server, tmp_path: Path) -> None:
    first = make_server()
    pdf = upload_bytes(first.url, API_KEY, make_pdf(["Invoice 7"]), "application/pdf")
    assert _wait_processed(first, pdf["name"])["state"] == "ACTIVE"
    first.stop()
    with sqlite3.connect(tmp_path / "localgem.db") as db:  # as if the server had stopped mid-processing
        db.execute("UPDATE files SET state = 'PROCESSING', text_sha256 = NULL WHERE id = ?", (pdf["name"][6:],))
    second = make_server()
    assert _wait_processed(second, pdf["name"])["state"] == "ACTIVE"
    count = _counter(second)
    assert count([{"fileData": {"fileUri": pdf["uri"], "mimeType": "application/pdf"}}]) == count(
        [{"text": "Invoice 7"}]
    )


def test_files_the_model_cannot_read_are_refused(fake_server: RunningServer) -> None:
    archive = upload_bytes(fake_server.url, API_KEY, b"PK\x03\x04 not read by anyone", "application/zip")
    assert _wait_processed(fake_server, archive["name"])["state"] == "ACTIVE"
    response = httpx.post(
        f"{fake_server.url}/v1beta/models/gemini-2.0-flash:generateContent",
        headers=KEY,
        json={"contents": [{"parts": [{"fileData": {"fileUri": archive["uri"], "mimeType": "application/zip"}}]}]},
    )
    message = response.json()["error"]["message"]
    assert response.status_code == 400 and "Unsupported MIME type 'application/zip'" in message
    outside = httpx.post(
        f"{fake_server.url}/v1beta/models/gemini-2.0-flash:countTokens",
        headers=KEY,
        json={"contents": [{"parts": [{"fileData": {"fileUri": "gs://bucket/x.txt"}}]}]},
    )
    assert outside.status_code == 400 and "Unsupported file uri" in outside.json()["error"]["message"]


def _counter(server: RunningServer):
    def count(parts: list[dict]) -> int:
        response = httpx.post(
            f"{server.url}/v1beta/models/gemini-2.0-flash:countTokens",
            headers=KEY,
            json={"contents": [{"parts": parts}]},
        )
        assert response.status_code == 200, response.text
        return response.json()["totalTokens"]

    return count


def _wait_processed(server: RunningServer, name: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        file = httpx.get(f"{server.url}/v1beta/{name}", headers=KEY).json()
        if file["state"] != "PROCESSING":
            return file
        time.sleep(0.05)
    raise AssertionError(f"{name} still PROCESSING")


def _multipart(parts: list[str], boundary: str = "xyz") -> bytes:
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"
    return body.encode()


BAD_UPLOADS = [
    ({"X-Goog-Upload-Protocol": "multipart", "Content-Type": "multipart/related; boundary=x"}, b"not multipart", 400),
    ({"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start"}, b"{not json", 400),
    ({"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start"}, b'{"file": {"sizeBytes": "x"}}', 400),
    ({"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start"}, b'{"file": {"colour": 1}}', 400),
    ({"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start"}, b'{"file": []}', 400),
    ({"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start"}, b"[1, 2]", 400),
    (
        {
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": "-4",
        },
        b"{}",
        400,
    ),
    ({"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start"}, b'{"file": {"sizeBytes": "-1"}}', 400),
    (
        {
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": "5",
        },
        b'{"file": {"sizeBytes": "6"}}',
        400,
    ),
    ({"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "upload"}, b"{}", 400),
    ({"X-Goog-Upload-Protocol": "multipart", "Content-Type": "multipart/related"}, b"--x--", 400),
    (
        {"X-Goog-Upload-Protocol": "multipart", "Content-Type": "multipart/related; boundary=xyz"},
        _multipart(['Content-Type: application/json\r\n\r\n{"file": {}}']),
        400,
    ),
    (
        {"X-Goog-Upload-Protocol": "multipart", "Content-Type": "multipart/related; boundary=xyz"},
        _multipart(["Content-Type: application/json\r\n\r\n{}", "\r\nmedia", "\r\nthird"]),
        400,
    ),
    (
        {"X-Goog-Upload-Protocol": "multipart", "Content-Type": "multipart/related; boundary=xyz"},
        b"--xyz\r\nContent-Type: application/json\r\n\r\n{}\r\n--xyz\r\n\r\nunterminated",
        400,
    ),
    (
        {"X-Goog-Upload-Protocol": "multipart", "Content-Type": "multipart/related; boundary=xyz"},
        _multipart(["Content-Type: application/json\r\n\r\n{bad", "\r\nmedia"]),
        400,
    ),
]


@pytest.mark.parametrize(("headers", "body", "status"), BAD_UPLOADS)
def test_malformed_uploads_get_a_4xx_never_a_500(fake_server: RunningServer, headers, body, status) -> None:
    response = httpx.post(f"{fake_server.url}/upload/v1beta/files", headers={**KEY, **headers}, content=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == status


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "abc"},
        {"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "-1"},
        {"X-Goog-Upload-Command": "explode"},
        {},
    ],
)
def test_malformed_chunks_get_a_400(fake_server: RunningServer, headers: dict) -> None:
    url = start_upload(fake_server.url, API_KEY, 4).headers["x-goog-upload-url"]
    response = httpx.post(url, headers=headers, content=b"data")
    assert response.status_code == 400, response.text
    assert query_upload(url).headers["x-goog-upload-size-received"] == "0"


def test_concurrent_chunks_for_one_session_are_serialized(fake_server: RunningServer) -> None:
    import concurrent.futures

    url = start_upload(fake_server.url, API_KEY, 2_000_000).headers["x-goog-upload-url"]
    data = b"q" * 1_000_000
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: send_chunk(url, data, 0), range(4)))
    assert sorted(r.status_code for r in results) == [200, 400, 400, 400]
    assert query_upload(url).headers["x-goog-upload-size-received"] == "1000000"


def test_upload_urls_expire(make_server) -> None:
    clock = Clock()
    server = make_server(clock=clock)
    url = start_upload(server.url, API_KEY, 4).headers["x-goog-upload-url"]
    assert send_chunk(url, b"ab", 0).status_code == 200
    clock.now += timedelta(days=7, seconds=1)
    assert send_chunk(url, b"cd", 2, finalize=True).status_code == 404
    assert query_upload(url).status_code == 404


def test_a_failed_one_shot_upload_frees_its_quota(make_server) -> None:
    server = make_server(max_project_bytes=100)
    too_long = httpx.post(
        f"{server.url}/upload/v1beta/files",
        headers={**KEY, "Content-Type": "text/plain", "X-Goog-Upload-Header-Content-Length": "60"},
        content=b"x" * 60,
    )
    assert too_long.status_code == 200
    failed = httpx.post(
        f"{server.url}/upload/v1beta/files?uploadType=multipart",
        headers={**KEY, "Content-Type": "multipart/related; boundary=xyz"},
        content=_multipart(['Content-Type: application/json\r\n\r\n{"file": {"sizeBytes": "30"}}', "\r\n" + "y" * 31]),
    )
    assert failed.status_code == 400 and "declared size of 30" in failed.json()["error"]["message"]
    # Had the failed upload kept its 30 bytes reserved, 40 more would exceed the quota of 100.
    assert start_upload(server.url, API_KEY, 40).status_code == 200

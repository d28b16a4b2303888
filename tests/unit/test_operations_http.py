"""The operations routes (every google.longrunning.Operations binding of the reference) over the real HTTP
stack: a batch is found, listed, cancelled and deleted under its name; no other collection holds it."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import API_KEY, OTHER_KEY
from tests.server import RunningServer

KEY = {"x-goog-api-key": API_KEY}
REQUEST = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 2}}
#: Operation collections where a batch's id names nothing (Veo and generated files are not served).
OTHER_GETS = (
    "generatedFiles/g1/operations/{id}",
    "models/gemini-2.5-flash/operations/{id}",
    "corpora/c1/operations/{id}",
    "fileSearchStores/s1/operations/{id}",
    "fileSearchStores/s1/upload/operations/{id}",
    "ragStores/s1/operations/{id}",
    "ragStores/s1/upload/operations/{id}",
)
OTHER_LISTS = ("models/gemini-2.5-flash/operations", "operations")
#: A tuned model's operations are its own: a model that does not exist has none.
NO_TUNED_MODEL = "Tuned model tunedModels/t1 does not exist."


def a_batch(server: RunningServer, requests: int = 2) -> str:
    body = {"batch": {"inputConfig": {"requests": {"requests": [{"request": REQUEST}] * requests}}}}
    created = httpx.post(f"{server.url}/v1beta/models/gemini-2.5-flash:batchGenerateContent", headers=KEY, json=body)
    assert created.status_code == 200, created.text
    return created.json()["name"]


def not_found(response: httpx.Response, message: str) -> None:
    assert response.status_code == 404, response.text
    assert response.json() == {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_a_batch_is_an_operation_under_its_name_and_nowhere_else(fake_server: RunningServer, version: str) -> None:
    url = f"{fake_server.url}/{version}"
    name = a_batch(fake_server)
    batch_id = name.split("/")[1]
    deadline = time.monotonic() + 10
    while not (found := httpx.get(f"{url}/{name}", headers=KEY).json())["done"]:
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    assert found["name"] == name and found["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert found["response"]["inlinedResponses"]["inlinedResponses"][0]["response"]["candidates"]
    assert [op["name"] for op in httpx.get(f"{url}/batches", headers=KEY).json()["operations"]] == [name]

    for path in OTHER_GETS:
        other = path.format(id=batch_id)
        not_found(httpx.get(f"{url}/{other}", headers=KEY), f"Operation {other} not found.")
    for path in OTHER_LISTS:
        listed = httpx.get(f"{url}/{path}", headers=KEY, params={"pageSize": 10})
        assert listed.status_code == 200 and listed.json() == {"operations": []}, (path, listed.text)
    for response in (
        httpx.get(f"{url}/tunedModels/t1/operations/{batch_id}", headers=KEY),
        httpx.get(f"{url}/tunedModels/t1/operations", headers=KEY),
        httpx.post(f"{url}/tunedModels/t1/operations/{batch_id}:cancel", headers=KEY),
    ):
        not_found(response, NO_TUNED_MODEL)
    for path in (f"operations/{batch_id}", f"operations/a/{batch_id}"):
        not_found(httpx.delete(f"{url}/{path}", headers=KEY), f"Operation {path} not found.")

    # Another project does not see it, under any binding.
    other = {"x-goog-api-key": OTHER_KEY}
    not_found(httpx.get(f"{url}/{name}", headers=other), f"Batch {name} not found.")
    assert httpx.get(f"{url}/batches", headers=other).json() == {"operations": []}
    not_found(httpx.post(f"{url}/{name}:cancel", headers=other), f"Batch {name} not found.")
    not_found(httpx.delete(f"{url}/{name}", headers=other), f"Batch {name} not found.")
    assert httpx.get(f"{url}/{name}").status_code == 403  # no key

    cancelled = httpx.post(f"{url}/{name}:cancel", headers=KEY)  # ended already: nothing to do
    assert cancelled.status_code == 200 and cancelled.json() == {}
    deleted = httpx.delete(f"{url}/{name}", headers=KEY)
    assert deleted.status_code == 200 and deleted.json() == {}
    not_found(httpx.get(f"{url}/{name}", headers=KEY), f"Batch {name} not found.")
    not_found(httpx.get(f"{url}/batches/Not-An-Id", headers=KEY), "Batch batches/Not-An-Id not found.")


def test_cancel_ends_a_running_batch(fake_server: RunningServer, fake_engine) -> None:
    fake_engine.delay = 0.2  # a word every 0.2 s: the batch is still running when it is cancelled
    url = f"{fake_server.url}/v1beta"
    name = a_batch(fake_server, requests=40)
    deadline = time.monotonic() + 10
    while (state := httpx.get(f"{url}/{name}", headers=KEY).json()["metadata"]["state"]) != "BATCH_STATE_RUNNING":
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert httpx.post(f"{url}/{name}:cancel", headers=KEY).json() == {}
    cancelled = httpx.get(f"{url}/{name}", headers=KEY).json()
    assert cancelled["done"] is True and cancelled["metadata"]["state"] == "BATCH_STATE_CANCELLED"
    assert int(cancelled["metadata"]["batchStats"]["pendingRequestCount"]) > 0
    runner = fake_server.app.state.runner
    deadline = time.monotonic() + 10
    while runner.running:  # its runner lets it go at its next renewal
        assert time.monotonic() < deadline
        time.sleep(0.05)
    again = httpx.get(f"{url}/{name}", headers=KEY).json()
    assert again["metadata"]["batchStats"] == cancelled["metadata"]["batchStats"]  # nothing recorded since

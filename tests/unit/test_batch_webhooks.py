"""batch.webhookConfig over the real HTTP stack (fake engine), with real receivers on loopback: a batch's
final state is POSTed, signed, to each URI, retried until acknowledged, and survives a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from localgem.app import create_app
from localgem.cli import main as cli
from localgem.operations.webhooks import RetryPolicy
from localgem.settings import load_settings
from localgem.storage.database import Database
from localgem.storage.records import WebhookDelivery
from localgem.storage.webhooks import SqlWebhookRepository
from tests.conftest import API_KEY
from tests.fakes import FakeEngine
from tests.server import RunningServer, start_server
from tests.webhook_receiver import Receiver, verify_signature

KEY = {"x-goog-api-key": API_KEY}
T = TypeVar("T")
FAST = RetryPolicy(first_delay=0.2, longest_delay=0.5, give_up_after=120, timeout=5)
REQUEST = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 2}}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    servers: list[RunningServer] = []

    def make(engine: FakeEngine | None = None) -> RunningServer:
        settings = load_settings(environ={}, data_dir=tmp_path, api_keys=[API_KEY], batch_poll_seconds=0.2)
        fake = engine or FakeEngine()
        server = start_server(create_app(settings, engine_factory=lambda entry: fake))
        server.app.state.webhooks.policy = FAST
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def create_batch(server: RunningServer, webhook_config: dict, requests: int = 2) -> httpx.Response:
    body = {
        "batch": {
            "displayName": "hooked",
            "inputConfig": {"requests": {"requests": [{"request": REQUEST} for _ in range(requests)]}},
            "webhookConfig": webhook_config,
        }
    }
    return httpx.post(f"{server.url}/v1beta/models/gemini-2.5-flash:batchGenerateContent", headers=KEY, json=body)


def poll(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 10) -> T:
    """``read()`` until ``done`` says its value is the one awaited."""
    deadline = time.monotonic() + timeout
    while not done(value := read()):
        assert time.monotonic() < deadline, value
        time.sleep(0.05)
    return value


def running(operation: dict) -> bool:
    return operation["metadata"]["state"] == "BATCH_STATE_RUNNING"


def signing_secret(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert cli(["webhooks", "--data-dir", str(data_dir), "secret"]) == 0
    return capsys.readouterr().out.strip()


def deliveries(data_dir: Path, batch_id: str) -> list[WebhookDelivery]:
    async def read() -> list[WebhookDelivery]:
        database = Database(f"sqlite+aiosqlite:///{data_dir / 'localgem.db'}")
        try:
            return await SqlWebhookRepository(database).for_batch("default", batch_id)
        finally:
            await database.close()

    return asyncio.run(read())


def test_the_final_state_is_posted_signed_to_each_uri_and_retried_until_acknowledged(
    make_server, receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = make_server()
    # /flaky fails its first attempts: a 503, then a connection dropped without an answer.
    receiver.plans["/flaky"] = lambda n: {1: 503, 2: None}.get(n, 204)
    metadata = {"job": "nightly", "shard": 3}
    created = create_batch(server, {"uris": [f"{receiver.url}/ok", f"{receiver.url}/flaky"], "userMetadata": metadata})
    assert created.status_code == 200, created.text
    name = created.json()["name"]
    assert "webhookConfig" not in created.text  # accepted, not echoed

    [ok] = receiver.wait_for("/ok", 1)
    flaky = receiver.wait_for("/flaky", 3)
    event = ok.event
    assert event["type"] == "batch.succeeded" and event["version"] == "v1"
    assert event["data"]["id"] == name and event["data"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert event["data"]["user_metadata"] == metadata
    operation = event["data"]["operation"]
    assert operation["name"] == name and operation["done"] is True
    assert operation["metadata"]["batchStats"]["successfulRequestCount"] == "2"
    assert event["timestamp"] == operation["metadata"]["endTime"]
    got = httpx.get(f"{server.url}/v1beta/{name}", headers=KEY).json()
    assert got["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"

    secret = signing_secret(tmp_path, capsys)
    assert secret.startswith("whsec_")
    for delivery in [ok, *flaky]:
        verify_signature(secret, delivery)
        assert delivery.headers["content-type"] == "application/json"
    # Every attempt of one delivery is the same message: one webhook-id, one body.
    assert len({d.headers["webhook-id"] for d in flaky}) == 1 and len({d.body for d in flaky}) == 1
    assert ok.headers["webhook-id"] != flaky[0].headers["webhook-id"]
    assert flaky[2].at - flaky[1].at >= FAST.delay(2) * 0.9  # backoff between attempts

    found = poll(lambda: deliveries(tmp_path, name.split("/")[1]), lambda ds: {d.state for d in ds} == {"DELIVERED"})
    stored = {d.url.rsplit("/", 1)[1]: d for d in found}
    assert stored["ok"].state == "DELIVERED" and stored["ok"].attempts == 1
    assert stored["flaky"].state == "DELIVERED" and stored["flaky"].attempts == 3
    assert len(receiver.at("/flaky")) == 3  # nothing is sent again once acknowledged


def test_a_cancelled_batch_reports_batch_cancelled(make_server, receiver: Receiver) -> None:
    server = make_server(FakeEngine(delay=0.5))
    created = create_batch(server, {"uris": [f"{receiver.url}/hook"]}, requests=1)
    name = created.json()["name"]
    poll(lambda: httpx.get(f"{server.url}/v1beta/{name}", headers=KEY).json(), running)  # cancelled mid-run
    assert httpx.post(f"{server.url}/v1beta/{name}:cancel", headers=KEY).status_code == 200
    [delivery] = receiver.wait_for("/hook", 1)
    assert delivery.event["type"] == "batch.cancelled" and delivery.event["data"]["id"] == name
    assert "user_metadata" not in delivery.event["data"]


def test_a_delivery_waiting_for_its_receiver_survives_a_restart(
    make_server, receiver: Receiver, tmp_path: Path
) -> None:
    down = True
    receiver.plans["/hook"] = lambda n: 503 if down else 200
    first = make_server()
    first.app.state.webhooks.policy = RetryPolicy(first_delay=1.0, longest_delay=1.0, give_up_after=120, timeout=5)
    name = create_batch(first, {"uris": [f"{receiver.url}/hook"]}).json()["name"]
    batch_id = name.split("/")[1]
    failed = receiver.wait_for("/hook", 1)
    deadline = time.monotonic() + 10
    while not (stored := deliveries(tmp_path, batch_id)) or stored[0].last_error is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.stop()  # between attempts: the next one is due in a second
    down = False
    make_server()
    arrived = receiver.wait_for("/hook", len(receiver.at("/hook")) + 1)
    assert arrived[-1].headers["webhook-id"] == failed[0].headers["webhook-id"]
    assert arrived[-1].event["type"] == "batch.succeeded"
    deadline = time.monotonic() + 10
    while deliveries(tmp_path, batch_id)[0].state != "DELIVERED":
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.parametrize(
    "config",
    [
        {"uris": ["ftp://example.com/hook"]},
        {"uris": ["file:///etc/passwd"]},
        {"uris": ["javascript:alert(1)"]},
        {"uris": ["example.com/hook"]},
        {"uris": ["http://"]},
        {"uris": ["http://exa mple.com/hook"]},
        {"uris": ["http://example.com:99999/hook"]},
        {"uris": [""]},
        {"uris": ["https://example.com/" + "x" * 2100]},
        {"uris": [f"https://example.com/{i}" for i in range(11)]},
        {"uris": []},
        {"userMetadata": {"a": 1}},
        {"uris": "https://example.com/hook"},
        {"uris": ["https://example.com/hook"], "secret": "x"},
    ],
)
def test_webhook_uris_must_be_http_urls(fake_server: RunningServer, config: dict) -> None:
    for model, kind in (("gemini-2.5-flash", "batchGenerateContent"), ("text-embedding-004", "asyncBatchEmbedContent")):
        request = REQUEST if kind == "batchGenerateContent" else {"content": {"parts": [{"text": "x"}]}}
        body = {"batch": {"inputConfig": {"requests": {"requests": [{"request": request}]}}, "webhookConfig": config}}
        refused = httpx.post(f"{fake_server.url}/v1beta/models/{model}:{kind}", headers=KEY, json=body)
        assert refused.status_code == 400, (kind, refused.text)
        assert refused.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert httpx.get(f"{fake_server.url}/v1beta/batches", headers=KEY).json()["operations"] == []

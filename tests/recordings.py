"""Replaying Google's REST/SSE recordings (js-genai's system-test recordings) against localgem.

The recordings live outside the repository, in ``../shared/spec/golden/js-genai-recordings`` (they are
never copied in); everything here copes with the folder being absent. Each recording holds
``interactions[]``: ``request`` (``method``, ``url``, ``bodySegments``) and ``response`` (``statusCode``,
``bodySegments``: one JSON body, or one per SSE event).

A replay compares shapes, not content: the status code, and the JSON key paths of Google's body
(list indices collapsed, ``candidates[].content.parts[].text``) against localgem's, minus the paths
in IGNORED and those that follow from what the model chose to say (see CHOICES).

``python -m tests.recordings`` replays everything against a fresh server and prints the totals.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO.parent / "shared" / "spec" / "golden" / "js-genai-recordings"

#: Output budget added to generation requests that set none, so a replay takes seconds. It changes
#: values (finishReason MAX_TOKENS rather than STOP, shorter text), not which keys a response has,
#: except that it can cut a function call short, which CHOICES allows for; requests with tools get
#: more room, so that a call the model starts can usually finish.
MAX_OUTPUT_TOKENS = 16
MAX_OUTPUT_TOKENS_WITH_TOOLS = 64
_GENERATION_METHODS = (":generateContent", ":streamGenerateContent")


@dataclass(frozen=True)
class Ignored:
    pattern: str  # a normalised key path; a trailing "*" matches every path that starts with the rest
    reason: str

    def matches(self, path: str) -> bool:
        if self.pattern.endswith("*"):
            return path.startswith(self.pattern[:-1])
        return path == self.pattern


#: Google's key paths a replay does not require, each for a reason that has nothing to do with the
#: response's shape: what the model chose to say, or a feature another issue builds.
IGNORED = (
    Ignored("candidates[].content.parts[].thoughtSignature", "content: which part Gemini signs depends on its answer"),
    Ignored("candidates[].content.parts[].thought", "content: whether the thought is still going when tokens run out"),
    Ignored("usageMetadata.thoughtsTokenCount", "content: a model that closes its thought at once spends none"),
    Ignored(
        "candidates[].content.parts[].functionCall.args.*",
        "content: which arguments (and which optional ones) the model filled in",
    ),
    Ignored("candidates[].content.parts[].functionResponse*", "MCP servers (another issue): server-side tool results"),
    Ignored("usageMetadata.toolUsePromptTokenCount", "MCP servers (another issue): tokens of server-side tool results"),
    Ignored(
        "usageMetadata.toolUsePromptTokensDetails*", "MCP servers (another issue): tokens of server-side tool results"
    ),
    Ignored(
        "candidates[].avgLogprobs",
        "Gemini 2.0 models send it unasked, 2.5 and later do not; localgem sends it with responseLogprobs, "
        "as computing log probabilities costs every decode step a pass over the vocabulary",
    ),
    Ignored(
        "usageMetadata.cachedContentTokenCount",
        "implicit caching: present when the server happened to hold the prompt's start (Google's cache or "
        "localgem's prefix reuse), which depends on what ran before",
    ),
    Ignored("usageMetadata.cacheTokensDetails*", "implicit caching, as cachedContentTokenCount"),
    Ignored(
        "error.details*",
        "Google's internal google.rpc.DebugInfo ('[ORIGINAL ERROR] generic::not_found: …') on a 404; "
        "localgem's NOT_FOUND has nothing to debug",
    ),
)

#: What the model chose to answer, and Google's paths that follow from it: required only when
#: localgem's answer made the same choice. SmolLM may answer in text where Gemini called a function,
#: or the other way, and may run into the output budget in the middle of a call.
CHOICES = {
    "text": ("candidates[].content.parts[].text",),
    "functionCall": (
        "candidates[].content.parts[].functionCall",
        "candidates[].content.parts[].functionCall.name",
        "candidates[].content.parts[].functionCall.args",
    ),
    # A candidate that ended (finishReason STOP) in function calls has Google's note saying so.
    "endedInCalls": ("candidates[].finishMessage",),
}


def choices(segments: list[Any]) -> set[str]:
    """The CHOICES a response's candidates made."""
    made = set()
    for segment in segments:
        for candidate in segment.get("candidates", []) if isinstance(segment, dict) else []:
            parts = (candidate.get("content") or {}).get("parts", [])
            made.update(kind for part in parts for kind in ("text", "functionCall") if kind in part)
            if candidate.get("finishReason") == "STOP" and any("functionCall" in part for part in parts):
                made.add("endedInCalls")
    return made


_MCP = "MCP servers (another issue): tools[].mcpServers is a 400 until localgem calls MCP servers itself"
KNOWN_DIFFERENCES: dict[str, str] = {
    "Chats_Tests_sendMessage_multiple_messages_with_server_side_MCP_tools": _MCP,
    "Chats_Tests_sendMessage_multiple_messages_with_server_side_MCP_tools_stream": _MCP,
    "Client_Tests_server_side_MCP_server_ML_Dev_should_call_server_side_MCP_server": _MCP,
    "Client_Tests_server_side_MCP_server_ML_Dev_should_call_server_side_MCP_server,_stream": _MCP,
}


@dataclass(frozen=True)
class Interaction:
    method: str
    url: str
    body: dict[str, Any] | None
    status: int
    segments: list[Any]


@dataclass(frozen=True)
class Recording:
    name: str
    interactions: list[Interaction]


@dataclass
class Outcome:
    """One replayed interaction."""

    google_status: int
    status: int
    google_paths: set[str]
    paths: set[str]
    required: set[str]  # Google's paths but those IGNORED and those of CHOICES localgem's answer did not make
    body: Any = None

    @property
    def missing(self) -> set[str]:
        return self.required - self.paths

    @property
    def status_matches(self) -> bool:
        return self.google_status == self.status


def available() -> bool:
    return GOLDEN.is_dir()


def recording_names() -> list[str]:
    return sorted(p.stem for p in GOLDEN.glob("*.json")) if available() else []


def load(name: str) -> Recording:
    data = json.loads((GOLDEN / f"{name}.json").read_text())
    interactions = []
    for item in data["interactions"]:
        request, response = item["request"], item["response"]
        bodies = request.get("bodySegments") or [None]
        interactions.append(
            Interaction(
                method=request["method"],
                url=request["url"],
                body=bodies[0],
                status=response["statusCode"],
                segments=response.get("bodySegments") or [],
            )
        )
    return Recording(name, interactions)


def key_paths(value: Any, prefix: str = "") -> Iterator[str]:
    """Every key path in a JSON value, list indices collapsed to ``[]``."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from key_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            yield from key_paths(item, f"{prefix}[]")


def paths_of(segments: list[Any]) -> set[str]:
    return {path for segment in segments for path in key_paths(segment)}


def required_paths(google: set[str], ours: list[Any]) -> set[str]:
    """Google's paths localgem's response (``ours``: its body segments) must have: all but those
    ignored for a documented reason."""
    required = {path for path in google if not any(rule.matches(path) for rule in IGNORED)}
    made = choices(ours)
    for choice, paths in CHOICES.items():
        if choice not in made:
            required -= set(paths)
    return required


def cheap(url: str, body: dict[str, Any] | None) -> dict[str, Any] | None:
    """A generation request with an output budget, unless it sets one."""
    if body is None or not any(method in url for method in _GENERATION_METHODS):
        return body
    body = copy.deepcopy(body)
    config = body.setdefault("generationConfig", {})
    if "maxOutputTokens" not in config and "max_output_tokens" not in config:
        config["maxOutputTokens"] = MAX_OUTPUT_TOKENS_WITH_TOOLS if body.get("tools") else MAX_OUTPUT_TOKENS
    return body


def response_segments(response: httpx.Response) -> list[Any]:
    if "text/event-stream" in response.headers.get("content-type", ""):
        return [
            json.loads(line.removeprefix("data:").strip())
            for line in response.text.splitlines()
            if line.startswith("data:")
        ]
    if not response.content:
        return []
    return [response.json()]


def replay(http: httpx.Client, interaction: Interaction) -> Outcome:
    body = cheap(interaction.url, interaction.body)
    response = http.request(interaction.method, interaction.url, json=body)
    segments = response_segments(response)
    google, ours = paths_of(interaction.segments), paths_of(segments)
    return Outcome(
        google_status=interaction.status,
        status=response.status_code,
        google_paths=google,
        paths=ours,
        required=required_paths(google, segments),
        body=segments,
    )


def replay_recording(http: httpx.Client, recording: Recording) -> list[Outcome]:
    return [replay(http, interaction) for interaction in recording.interactions]


@dataclass
class Totals:
    recordings: int = 0
    recordings_matched: int = 0  # every interaction's status matches
    interactions: int = 0
    interactions_matched: int = 0
    google_paths: int = 0
    present: int = 0  # Google's paths localgem's response has, with nothing ignored
    required: int = 0  # Google's paths but those ignored (see Outcome.required)
    required_present: int = 0
    failures: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, outcomes: list[Outcome]) -> None:
        self.recordings += 1
        self.recordings_matched += all(o.status_matches for o in outcomes)
        problems = []
        for n, outcome in enumerate(outcomes):
            self.interactions += 1
            self.interactions_matched += outcome.status_matches
            self.google_paths += len(outcome.google_paths)
            self.present += len(outcome.google_paths & outcome.paths)
            self.required += len(outcome.required)
            self.required_present += len(outcome.required & outcome.paths)
            if not outcome.status_matches:
                problems.append(f"#{n}: status {outcome.status}, Google {outcome.google_status}: {outcome.body}")
            if outcome.missing:
                problems.append(f"#{n}: missing {sorted(outcome.missing)}")
        if problems:
            self.failures[name] = problems

    def summary(self) -> str:
        return (
            f"statuses: {self.recordings_matched}/{self.recordings} recordings, "
            f"{self.interactions_matched}/{self.interactions} interactions; "
            f"Google's key paths present: {self.present}/{self.google_paths} "
            f"({100 * self.present / max(self.google_paths, 1):.1f}%), "
            f"after documented ignores {self.required_present}/{self.required} "
            f"({100 * self.required_present / max(self.required, 1):.1f}%)"
        )


def main() -> None:
    import sys
    import tempfile
    import time

    from localgem.app import create_app
    from localgem.settings import load_settings
    from tests.server import start_server

    if not available():
        raise SystemExit(f"no recordings at {GOLDEN}")
    with tempfile.TemporaryDirectory() as data_dir:
        # One inference thread at normal priority: on a busy machine, niced threads or a spinning thread
        # pool on every core make the replay crawl (one token a second instead of dozens).
        settings = load_settings(
            environ={}, data_dir=Path(data_dir), api_keys=["replay-key"], inference_niceness=0, threads=1
        )
        server = start_server(create_app(settings))
        totals, expected = Totals(), Totals()  # all recordings; those not in KNOWN_DIFFERENCES
        try:
            with httpx.Client(base_url=server.url, headers={"x-goog-api-key": "replay-key"}, timeout=300) as http:
                for name in recording_names():
                    started = time.monotonic()
                    outcomes = replay_recording(http, load(name))
                    totals.add(name, outcomes)
                    if name not in KNOWN_DIFFERENCES:
                        expected.add(name, outcomes)
                    print(f"{time.monotonic() - started:6.1f}s {name}", file=sys.stderr, flush=True)
        finally:
            server.stop()
    for name, problems in totals.failures.items():
        print(name + (" (known difference)" if name in KNOWN_DIFFERENCES else ""))
        for problem in problems:
            print("   ", problem[:600])
    print("all:", totals.summary())
    print("outside KNOWN_DIFFERENCES:", expected.summary())


if __name__ == "__main__":
    main()

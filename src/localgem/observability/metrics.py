"""A server's Prometheus metrics, on a registry of its own (no module globals: each app has its own).

Measured per request by ``requests.RequestLog``: requests by API method, model and status code, latency and
time-to-first-chunk histograms, generation tokens in and out, upload bytes. Read from the engines at each scrape
(``EngineCollector``): sequences decoding, requests queued, prompt tokens computed and reused from cached prefixes,
tokens generated, kept prefixes restored — per loaded model."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class RequestRecord:
    """One finished request, as the middleware saw it."""

    method: str  # the API method (generateContent, files.upload, …)
    model: str  # the model the URL names, or ""
    code: int
    seconds: float
    first_chunk_seconds: float | None  # streamed responses only
    request_bytes: int
    upload: bool = False  # an upload request (its bytes are counted)
    prompt_tokens: int | None = None
    output_tokens: int | None = None


class Metrics:
    def __init__(
        self,
        engine_stats: Callable[[], Mapping[str, Any]],
        sandbox_runs: Callable[[], int] | None = None,
        job_counts: Callable[[], Awaitable[Mapping[tuple[str, str], int]]] | None = None,
    ) -> None:
        """``engine_stats``: model id → its engine's ``EngineStats`` (the models loaded now); ``sandbox_runs``:
        code runs started so far (None: code execution is unavailable); ``job_counts``: (kind, state) → jobs in
        the database, read before each scrape."""
        self.registry = CollectorRegistry()
        self._job_counts = job_counts
        self.jobs = Gauge(
            "localgem_jobs",
            "Long-running jobs in the database (every server sharing it) by kind (batch, tuning, ingest, video) "
            "and state.",
            ["kind", "state"],
            registry=self.registry,
        )
        self.requests = Counter(
            "localgem_requests",
            "HTTP requests by API method, model and status code.",
            ["method", "model", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "localgem_request_duration_seconds",
            "Seconds from request to the end of its response, by API method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_chunk = Histogram(
            "localgem_time_to_first_chunk_seconds",
            "Streamed responses: seconds from request to the first chunk (the first tokens), by API method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "localgem_generation_tokens",
            "Tokens of generation requests: prompt (in) and output (out), by model.",
            ["model", "direction"],
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "localgem_upload_bytes", "Bytes received by upload requests (files, documents).", registry=self.registry
        )
        self.registry.register(EngineCollector(engine_stats))
        if sandbox_runs is not None:
            self.registry.register(_FunctionCounter("localgem_sandbox_runs", "Code runs started.", sandbox_runs))

    def observe(self, record: RequestRecord) -> None:
        self.requests.labels(record.method, record.model, str(record.code)).inc()
        self.latency.labels(record.method).observe(record.seconds)
        if record.first_chunk_seconds is not None:
            self.first_chunk.labels(record.method).observe(record.first_chunk_seconds)
        if record.prompt_tokens:
            self.tokens.labels(record.model, "in").inc(record.prompt_tokens)
        if record.output_tokens:
            self.tokens.labels(record.model, "out").inc(record.output_tokens)
        if record.upload:
            self.upload_bytes.inc(record.request_bytes)

    async def refresh(self) -> None:
        """Reads what is counted in the database; if it cannot be read, the last counts stay."""
        if self._job_counts is None:
            return
        try:
            counts = await self._job_counts()
        except Exception as exc:  # the database may be briefly away: the scrape still answers
            log.warning("could not count the jobs for /metrics: %s", str(exc) or type(exc).__name__)
            return
        self.jobs.clear()
        for (kind, state), count in counts.items():
            self.jobs.labels(kind, state).set(count)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _FunctionCounter(Collector):
    """A counter whose value is read from ``value()`` at each scrape."""

    def __init__(self, name: str, help_text: str, value: Callable[[], float]) -> None:
        self._name, self._help, self._value = name, help_text, value

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._help, value=self._value())


class EngineCollector(Collector):
    """The engines' own counters, read when Prometheus scrapes."""

    def __init__(self, engine_stats: Callable[[], Mapping[str, Any]]) -> None:
        self._stats = engine_stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        gauges = {
            "active_sequences": ("localgem_active_sequences", "Sequences decoding now."),
            "queued_requests": ("localgem_queued_requests", "Requests waiting for a slot."),
            "kv_cells_used": (
                "localgem_kv_cells_used",
                "KV cells the model's slots hold: running sequences' tokens and the prefix cache.",
            ),
        }
        counters = {
            "prompt_tokens_evaluated": ("localgem_prompt_tokens_computed", "Prompt tokens computed."),
            "prompt_tokens_reused": (
                "localgem_prompt_tokens_reused",
                "Prompt tokens taken from the KV cells an earlier prompt left (prefix-cache hits, in tokens).",
            ),
            "tokens_generated": ("localgem_tokens_generated", "Tokens generated."),
            "prefixes_restored": (
                "localgem_prefixes_restored",
                "Requests started from a kept prefix (cached contents).",
            ),
            "requests_rejected": ("localgem_requests_rejected", "Requests refused with a full queue (503)."),
            "decode_steps": ("localgem_decode_steps", "Decode steps (each decodes every active sequence once)."),
        }
        for field, (name, help_text) in gauges.items():
            family = GaugeMetricFamily(name, help_text, labels=["model"])
            for model, stat in stats.items():
                family.add_metric([model], getattr(stat, field))
            yield family
        for field, (name, help_text) in counters.items():
            family = CounterMetricFamily(name, help_text, labels=["model"])
            for model, stat in stats.items():
                family.add_metric([model], getattr(stat, field))
            yield family

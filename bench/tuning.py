"""Tuning, against ``localgem serve`` in its own process:

1. Training speed: a job of 100 examples × 3 epochs (batch 4) on SmolLM2, as training tokens per second between
   its first and last step (from the operation's snapshots), vs the same peft training loop (same GGUF weights,
   same LoRA, same batches, same threads) called directly in this process. Target: job ÷ direct ≥ 0.9.
2. Wall time of that job: create → ACTIVE (model loading and the adapter's conversion included).
3. Serving: 8 concurrent greedy streamed requests to the base model alone, to the tuned model alone, 4 + 4
   mixed, and the base model with two tuned models (3 + 3 + 2; the scheduler decodes each adapter in its own
   call): output tokens per second of all of them, and per kind the mean latency and the mean decode speed of
   one request (tokens per second after its first chunk).

    .venv/bin/python bench/tuning.py [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from common import KEY, serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.tuning_data import answer, questions  # noqa: E402

HEADERS = {"x-goog-api-key": KEY}
BASE = "models/smollm2-135m-instruct"
PROMPTS = [
    "Tell me about the history of the city of {}.",
    "What is {} famous for? Answer in detail.",
]


def hundred_questions() -> list[str]:
    found = questions()
    extra = [p.format(place) for p in PROMPTS for place in ("Rome", "Lima", "Oslo", "Cairo", "Delhi", "Quito")]
    extra += [f"What is {a} times {b}?" for a in range(2, 7) for b in range(3, 8)]
    return (found + extra)[:100]


def train_job(url: str, questions: list[str], epochs: int, output=answer) -> tuple[str, dict, float]:  # noqa: ANN001
    """Creates a job; returns (model name, its operation, when it was created)."""
    examples = [{"textInput": q, "output": output(q)} for q in questions]
    body = {
        "displayName": "bench",
        "baseModel": BASE,
        "tuningTask": {
            "hyperparameters": {"epochCount": epochs, "batchSize": 4, "learningRate": 0.001},
            "trainingData": {"examples": {"examples": examples}},
        },
    }
    start = time.perf_counter()
    operation = httpx.post(f"{url}/v1beta/tunedModels", json=body, headers=HEADERS, timeout=300).json()
    return operation["metadata"]["tunedModel"], operation, start


def wait_job(url: str, operation: dict, data_dir: Path, start: float) -> tuple[dict, float, Path]:
    """Waits for a job to end, keeping a copy of its training spec (the server removes it at the end)."""
    spec_copy = data_dir.parent / f"spec-{operation['name'].rsplit('/', 1)[1]}.json"
    while True:
        found = httpx.get(f"{url}/v1beta/{operation['name']}", headers=HEADERS, timeout=60).json()
        for spec in data_dir.glob(f"tuning/*-{operation['name'].rsplit('/', 1)[1]}/spec.json"):
            if not spec_copy.exists():
                shutil.copy(spec, spec_copy)
        if found["done"]:
            return found, time.perf_counter() - start, spec_copy
        time.sleep(0.5)


def job_rate(operation: dict, spec_path: Path) -> float:
    """Training tokens per second between the first step's end and the last step's end."""
    from localgem.tuning.trainer import TrainingSpec

    spec = TrainingSpec.load(spec_path)
    snapshots = operation["metadata"]["snapshots"]
    times = [datetime.fromisoformat(s["computeTime"].replace("Z", "+00:00")) for s in snapshots]
    steps = step_tokens(spec)
    seconds = (times[-1] - times[0]).total_seconds()
    return sum(steps[1:]) / seconds


def step_tokens(spec) -> list[int]:  # noqa: ANN001
    tokens = []
    for epoch in range(1, spec.epochs + 1):
        for batch in spec.batches(epoch):
            tokens.append(sum(len(spec.examples[i][0]) + len(spec.examples[i][1]) for i in batch))
    return tokens


def direct_rate(spec_path: Path, threads: int) -> float:
    """The same training with peft and PyTorch called directly, in this process."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from localgem.tuning.trainer import TARGET_MODULES, TrainingSpec, collate

    torch.set_num_threads(threads)
    spec = TrainingSpec.load(spec_path)
    gguf = Path(spec.gguf)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=0.0, target_modules=TARGET_MODULES)
    model = get_peft_model(model, config)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=spec.learning_rate)
    ends = []
    for epoch in range(1, spec.epochs + 1):
        for batch in spec.batches(epoch):
            inputs = collate([spec.examples[i] for i in batch], 0)
            model(**inputs).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ends.append(time.perf_counter())
    return sum(step_tokens(spec)[1:]) / (ends[-1] - ends[0])


async def serving(url: str, tuned_models: list[str], rounds: int) -> dict[str, dict[str, float]]:
    """Scenario → output tokens/s of all requests together, and per kind: mean latency and mean decode speed
    of one request (its tokens after the first, over the time from its first streamed chunk to its last)."""
    prompts = [
        f"Tell me a long story about a dragon called {name} who lives in a cave by the sea and collects coins?"
        for name in "Ash Bo Cy Di Ed Fa Gu Hy".split()
    ]
    body = {"generationConfig": {"temperature": 0, "maxOutputTokens": 64}}
    results: dict[str, dict[str, float]] = {}
    tuned, other = tuned_models
    async with httpx.AsyncClient(base_url=f"{url}/v1beta", headers=HEADERS, timeout=600) as http:

        async def one(model: str, prompt: str) -> tuple[str, int, float, float]:
            start = time.perf_counter()
            first = last = start
            tokens = 0
            request = {**body, "contents": [{"parts": [{"text": prompt}]}]}
            async with http.stream("POST", f"{model}:streamGenerateContent", params={"alt": "sse"}, json=request) as r:
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    chunk = json.loads(line[5:])
                    last = time.perf_counter()
                    if first == start:
                        first = last
                    tokens = chunk.get("usageMetadata", {}).get("candidatesTokenCount", tokens)
            decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")
            return model, tokens, last - start, decode

        for model in (BASE, tuned, other):
            await one(model, "warm up")
        scenarios = (
            ("base alone", [BASE] * 8),
            ("tuned alone", [tuned] * 8),
            ("base + tuned 4+4", [BASE, tuned] * 4),
            ("base + 2 tuned", [BASE, tuned, other, BASE, tuned, other, BASE, tuned]),
        )
        for name, models in scenarios:
            tokens, seconds = 0, 0.0
            latencies: dict[str, list[float]] = {BASE: [], tuned: [], other: []}
            speeds: dict[str, list[float]] = {BASE: [], tuned: [], other: []}
            for _ in range(rounds):
                start = time.perf_counter()
                done = await asyncio.gather(*(one(m, p) for m, p in zip(models, prompts, strict=True)))
                seconds += time.perf_counter() - start
                for model, count, latency, speed in done:
                    tokens += count
                    latencies[model].append(latency)
                    speeds[model].append(speed)
            results[name] = {"tokens_per_s": tokens / seconds}
            for model, kind in ((BASE, "base"), (tuned, "tuned"), (other, "tuned2")):
                if latencies[model]:
                    results[name][f"{kind}_latency_s"] = statistics.mean(latencies[model])
                    results[name][f"{kind}_decode_tokens_per_s"] = statistics.mean(speeds[model])
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        url, process = serve(str(data), tuning_threads=str(args.threads), threads=str(args.threads))
        try:
            tuned, operation, start = train_job(url, hundred_questions(), 3)
            final, wall, spec = wait_job(url, operation, data, start)
            assert "error" not in final, final
            job = job_rate(final, spec)
            steps = final["metadata"]["totalSteps"]
            print(f"job: 100 examples x 3 epochs = {steps} steps, wall {wall:.1f} s (create -> ACTIVE)")
            # A second tuned model (another format), to serve beside the first.
            other, operation, start = train_job(url, hundred_questions()[:20], 2, lambda q: f"Well... {q} I wonder.")
            assert "error" not in wait_job(url, operation, data, start)[0]
            served = asyncio.run(serving(url, [tuned, other], args.rounds))
        finally:
            process.kill()
        direct = direct_rate(spec, args.threads)
        print(f"training tokens/s: job {job:.0f}, peft directly {direct:.0f}, ratio {job / direct:.2f} (target >= 0.9)")
        for name, figures in served.items():
            print(f"serving {name:12s}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
        print(json.dumps({"job_tokens_per_s": job, "direct_tokens_per_s": direct, "wall_s": wall, "serving": served}))


if __name__ == "__main__":
    main()

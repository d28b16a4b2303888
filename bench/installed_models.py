"""What Qwen2.5-Coder-0.5B (installed by name) costs next to the builtin SmolLM2-135M: prompt and generation
tokens/s and the server's resident memory, each model served by its own `localgem serve` process, measured over
HTTP in the same run. Prints ratios; asserts nothing about time.

    .venv/bin/python bench/installed_models.py [--data-dir DIR] [--runs 3] [--tokens 64]

The data dir keeps the installed model between runs (it is installed there first if it is not).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import KEY, serve

QWEN = "qwen2.5-coder-0.5b-instruct"
SMOLLM = "smollm2-135m-instruct"
# About 400 prompt tokens: the prompt's speed is measured on a prompt of a realistic size.
PROMPT = "Here is some Python code:\n\n" + "\n".join(f"def f{i}(x):\n    return x * {i} + {i * 7}" for i in range(24))


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def one_run(url: str, model: str, tokens: int, salt: int) -> tuple[float, float, int]:
    """(prompt tokens/s, generation tokens/s, prompt tokens) of one streamed request; ``salt`` makes each prompt
    new so that no KV-cache prefix is reused."""
    body = {
        "contents": [{"parts": [{"text": f"Run {salt}.\n{PROMPT}\nExplain what f3 does."}]}],
        "generationConfig": {"temperature": 0, "maxOutputTokens": tokens},
    }
    start = time.perf_counter()
    first = last = 0.0
    usage: dict = {}
    with httpx.stream(
        "POST",
        f"{url}/v1beta/models/{model}:streamGenerateContent",
        params={"alt": "sse"},
        json=body,
        headers={"x-goog-api-key": KEY},
        timeout=600,
    ) as response:
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            chunk = json.loads(line[5:])
            first = first or time.perf_counter()
            last = time.perf_counter()
            usage = chunk.get("usageMetadata", usage)
    prompt_tokens, output_tokens = usage["promptTokenCount"], usage["candidatesTokenCount"]
    return prompt_tokens / (first - start), (output_tokens - 1) / (last - first), prompt_tokens


def measure(data_dir: str, runs: int, tokens: int) -> dict[str, dict[str, float]]:
    """Both servers up at once (an idle one takes no CPU), their requests taking turns, so that a change in the
    machine's load during the run touches both models alike."""
    servers = {model: serve(data_dir, preload="[]") for model in (SMOLLM, QWEN)}
    try:
        idle = {model: rss_bytes(process.pid) for model, (_url, process) in servers.items()}
        for model, (url, _process) in servers.items():
            one_run(url, model, 8, -1)  # loads the model
        results: dict[str, list[tuple[float, float, int]]] = {model: [] for model in servers}
        for salt in range(runs):
            for model, (url, _process) in servers.items():
                results[model].append(one_run(url, model, tokens, salt))
        return {
            model: {
                "prompt_tps": statistics.median(r[0] for r in runs_),
                "gen_tps": statistics.median(r[1] for r in runs_),
                "prompt_tokens": runs_[0][2],
                "rss_mb": rss_bytes(servers[model][1].pid) / 1e6,
                "idle_rss_mb": idle[model] / 1e6,
            }
            for model, runs_ in results.items()
        }
    finally:
        for _url, process in servers.values():
            process.terminate()
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "localgem-bench-installed")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # As a user does: the CLI installs it (its progress bar on stderr) and adds it to the data dir's catalogue.
    subprocess.run(
        [sys.executable, "-m", "localgem", "models", "install", QWEN, "--data-dir", str(args.data_dir)], check=True
    )
    print(f"{QWEN} installed (or found) in {time.perf_counter() - start:.1f} s")
    numbers = measure(str(args.data_dir), args.runs, args.tokens)
    print(f"{'model':<30}{'prompt tok/s':>14}{'gen tok/s':>12}{'RSS MB':>10}{'RSS before load MB':>20}")
    for model, n in numbers.items():
        print(f"{model:<30}{n['prompt_tps']:>14.1f}{n['gen_tps']:>12.1f}{n['rss_mb']:>10.0f}{n['idle_rss_mb']:>20.0f}")
    base, qwen = numbers[SMOLLM], numbers[QWEN]
    print(
        f"Qwen/SmolLM2: prompt speed x{qwen['prompt_tps'] / base['prompt_tps']:.2f}, "
        f"generation speed x{qwen['gen_tps'] / base['gen_tps']:.2f}, "
        f"RSS +{qwen['rss_mb'] - base['rss_mb']:.0f} MB (x{qwen['rss_mb'] / base['rss_mb']:.2f}); "
        f"prompt of {base['prompt_tokens']} tokens, {args.tokens} generated, median of {args.runs}"
    )


if __name__ == "__main__":
    main()

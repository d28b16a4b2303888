"""Constrained (structured output) vs unconstrained generation speed, same prompts, same run.

For each prompt, localgem (over HTTP, one request at a time) generates (a) free text and (b) JSON
constrained by a schema, both greedy-free (temperature 0.8, fixed seed). Prints tokens/s of each
(generated tokens ÷ wall time, summed over prompts) and (b)/(a); the target is ≥ 0.8.

``--long N``: the worst case found, thousands of tokens into one response. (b) is an object with
nested objects, ``anyOf``, formats, bounds and unbounded arrays of strings (arrays and strings left
unbounded by the server too, so a small model adds array items until the output limit); (a) is free
text that also runs to the limit (a prompt the model loops on; the loop guard off). Both stream N
tokens greedily; tokens are counted per chunk (from its log probabilities) and timed by window, so
the two are compared at the same depth into the response.

    .venv/bin/python bench/structured.py [--model smollm2-135m-instruct] [--rounds 3] [--long 3000]
"""

from __future__ import annotations

import argparse
import json
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


#: Like the object in Google's recorded structured-output request: every kind of field, arrays unbounded.
LONG_SCHEMA = {
    "type": "object",
    "properties": {
        "fixes": {"type": "array", "items": {"type": "string"}},
        "summary": {"type": "string", "description": "One sentence."},
        "created": {"type": "string", "format": "date-time"},
        "kind": {"type": "string", "enum": ["bug", "feature", "chore"]},
        "score": {"type": "number", "minimum": 1, "maximum": 10},
        "count": {"type": "integer"},
        "done": {"type": "boolean"},
        "owner": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "labels": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
        "inner": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "size": {"type": "number"}},
            "required": ["name", "size"],
        },
    },
    "required": ["fixes", "summary", "created", "kind", "score", "count", "done", "owner", "labels", "inner"],
}
LONG_PROMPTS = {False: "Repeat after me: la la la la la la la la la la", True: "populate the following object"}
WINDOW = 500


def run_long(client: httpx.Client, model: str, constrained: bool, tokens: int, windows: bool) -> list[float]:
    """One streamed response: with ``windows``, tokens/s in each window of WINDOW tokens (counted from
    the log probabilities each chunk carries); else tokens/s over the whole response, without them."""
    config: dict = {"temperature": 0, "maxOutputTokens": tokens, "responseLogprobs": windows}
    if constrained:
        config |= {"responseMimeType": "application/json", "responseJsonSchema": LONG_SCHEMA}
    body = {"contents": [{"parts": [{"text": LONG_PROMPTS[constrained]}]}], "generationConfig": config}
    times: list[float] = []
    started = time.perf_counter()
    with client.stream("POST", f"/v1beta/models/{model}:streamGenerateContent?alt=sse", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data:"):
                chunk = json.loads(line[5:])
                result = chunk["candidates"][0].get("logprobsResult", {})
                times += [time.perf_counter()] * len(result.get("chosenCandidates", []))
                generated = chunk["usageMetadata"].get("candidatesTokenCount", 0)
    if not windows:
        return [generated / (time.perf_counter() - started)]
    return [WINDOW / (times[end - 1] - times[end - WINDOW]) for end in range(WINDOW, len(times) + 1, WINDOW)]


def long_bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as data:
        url, process = serve(
            data,
            preload=args.model,
            json_array_max_items="0",
            json_string_max_chars="0",
            repetition_stop_tokens="0",
            default_max_output_tokens="0",
        )
        try:
            with httpx.Client(base_url=url, headers={"x-goog-api-key": KEY}, timeout=3600) as client:
                rates: dict[tuple[bool, bool], list[list[float]]] = {}
                for _ in range(args.rounds):
                    for windows in (False, True):
                        for constrained in (False, True):
                            rate = run_long(client, args.model, constrained, args.long, windows)
                            rates.setdefault((constrained, windows), []).append(rate)
        finally:
            process.terminate()
            process.wait()
    print(f"{args.model}, {args.long} tokens streamed, greedy, median of {args.rounds} rounds")
    free, json_ = (statistics.median(r[0] for r in rates[(c, False)]) for c in (False, True))
    print(f"whole response:      (a) free {free:6.1f}  (b) JSON {json_:6.1f} tok/s  (b)/(a) = {json_ / free:.2f}")
    print(f"by window of {WINDOW} tokens (with log probabilities, which cost both alike):")
    for w in range(min(len(r) for key, runs in rates.items() if key[1] for r in runs)):
        free, json_ = (statistics.median(r[w] for r in rates[(c, True)]) for c in (False, True))
        span = f"{w * WINDOW:5d}-{(w + 1) * WINDOW:5d}"
        print(f"  tokens {span}: (a) {free:6.1f}  (b) {json_:6.1f}  (b)/(a) = {json_ / free:.2f}")


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
    parser.add_argument("--long", type=int, default=0, help="the long-response worst case, with this many tokens")
    args = parser.parse_args()
    if args.long:
        long_bench(args)
        return
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

"""Time to first token with a ~2,000-token cached context vs the same prompt uncached, same run.

Cold: the document plus a question, sent whole, with a fresh nonce at its start each time so no
earlier prompt's cells can be reused. Cached: the document as a cachedContent (created once), each
request sending only the question. Both stream (``?alt=sse``); time to the first chunk with text.
Prints medians and cached ÷ cold (target ≤ 0.05).

    .venv/bin/python bench/caching.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import uuid

import httpx
from common import KEY, first_token_seconds, serve

DOCUMENT = "\n".join(
    f"Section {i}: the pump in room {i % 17} runs for {i * 7 % 23} minutes at {i * 13 % 97} percent power."
    for i in range(1, 110)
)
QUESTIONS = [
    "Which room has section 12?",
    "How long does section 40 run?",
    "Summarise section 3.",
    "What is in room 5?",
]
HEADERS = {"x-goog-api-key": KEY}
CONFIG = {"temperature": 0, "maxOutputTokens": 8}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        url, process = serve(data_dir)
        try:
            created = httpx.post(
                f"{url}/v1beta/cachedContents",
                json={
                    "model": "models/gemini-2.5-flash",
                    "contents": [{"role": "user", "parts": [{"text": DOCUMENT}]}],
                },
                headers=HEADERS,
                timeout=600,
            ).json()
            tokens = created["usageMetadata"]["totalTokenCount"]
            cold, cached = [], []
            for i in range(args.rounds):
                question = {"role": "user", "parts": [{"text": QUESTIONS[i % len(QUESTIONS)]}]}
                document = {"role": "user", "parts": [{"text": f"[{uuid.uuid4()}]\n{DOCUMENT}"}]}
                cold.append(first_token_seconds(url, {"contents": [document, question], "generationConfig": CONFIG}))
                body = {"cachedContent": created["name"], "contents": [question], "generationConfig": CONFIG}
                cached.append(first_token_seconds(url, body))
        finally:
            process.terminate()
            process.wait()
    a, b = statistics.median(cached), statistics.median(cold)
    print(f"cached context: {tokens} tokens; median of {args.rounds} rounds")
    print(f"time to first token, uncached: {b * 1000:8.1f} ms")
    print(f"time to first token, cached:   {a * 1000:8.1f} ms")
    print(f"cached / uncached:             {a / b:.3f} (target <= 0.05)")


if __name__ == "__main__":
    main()

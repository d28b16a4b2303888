"""The loop guard: an output whose last tokens repeat one stretch exactly is noticed, and nothing else."""

from __future__ import annotations

import random

from localgem.engines.repetition import MAX_PERIOD, RepetitionWatch


def first_loop(tokens: list[int], span: int, prompt: int = 0) -> int | None:
    """How many tokens the watch sees before it says the output loops (None: never)."""
    watch = RepetitionWatch(span)
    for end in range(prompt + 1, len(tokens) + 1):
        if watch.looping(tokens[:end]):
            return end - prompt
    return None


def test_an_exact_loop_is_seen_once_it_covers_the_span() -> None:
    rng = random.Random(3)
    for period in (1, 2, 7, 50, MAX_PERIOD):
        stretch = [rng.randrange(50_000) for _ in range(period)]
        opening = [rng.randrange(50_000) for _ in range(40)]
        tokens = opening + stretch * (1 + 600 // period)
        # the repetition starts at token len(opening) + period; it is a loop once it is 256 tokens long
        assert first_loop(tokens, span=256) == len(opening) + period + 256, period


def test_varied_text_and_longer_cycles_are_left_alone() -> None:
    rng = random.Random(4)
    varied = [rng.randrange(50_000) for _ in range(3000)]
    assert first_loop(varied, span=256) is None
    cycle = [rng.randrange(50_000) for _ in range(MAX_PERIOD + 1)]
    assert first_loop(cycle * 6, span=256) is None  # a stretch longer than MAX_PERIOD is not watched
    almost = [t if i % 97 else rng.randrange(50_000) for i, t in enumerate([1, 2, 3] * 1000)]
    assert first_loop(almost, span=256) is None  # a loop broken every 97 tokens never covers 256

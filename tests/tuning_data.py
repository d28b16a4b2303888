"""Examples that teach SmolLM2 a format it never produces by itself: every answer starts with a made-up keyword
and repeats the question. 50 to train on, the rest held out to check that it generalised."""

from __future__ import annotations

import random

KEYWORD = "ZORBLAX!"
COUNTRIES = [
    "France", "Japan", "Brazil", "Canada", "Egypt", "India", "Italy", "Kenya", "Mexico", "Norway", "Peru", "Spain",
    "Chile", "Ghana", "Greece", "Poland", "Sweden", "Turkey", "Vietnam", "Argentina", "Germany", "China",
    "Australia", "Portugal", "Ireland",
]  # fmt: skip
THINGS = [
    "the sky", "grass", "snow", "a banana", "coal", "an orange", "blood", "milk", "a lemon", "the sea", "a tomato",
    "chocolate", "a carrot", "ash", "a plum",
]  # fmt: skip
ANIMALS = ["a cat", "a dog", "a horse", "a spider", "a bird", "a snake", "a fish", "a cow", "an ant", "a frog", "a bee"]
SUMS = [(2, 3), (5, 7), (9, 4), (6, 6), (12, 3), (8, 1), (10, 10), (7, 2), (3, 3), (11, 4), (15, 5), (20, 1)]


def questions() -> list[str]:
    found = [f"What is the capital of {c}?" for c in COUNTRIES]
    found += [f"What color is {t}?" for t in THINGS]
    found += [f"How many legs does {a} have?" for a in ANIMALS]
    found += [f"What is {a} plus {b}?" for a, b in SUMS]
    return found


def split(seed: int = 0) -> tuple[list[str], list[str]]:
    """(50 training questions, the held-out rest)."""
    found = questions()
    random.Random(seed).shuffle(found)
    return found[:50], found[50:]


def answer(question: str) -> str:
    return f"{KEYWORD} {question.rstrip('?')}? Answer noted."


def examples(questions: list[str]) -> list[dict[str, str]]:
    return [{"textInput": q, "output": answer(q)} for q in questions]

"""Pictures in prompts as placeholder tokens (engines/llama/vision.py): the same picture gives the same
run of ids, different pictures different runs, and runs are found again in a prompt."""

from __future__ import annotations

import hashlib

from localgem.engines.llama.vision import picture_of, placeholder, placeholder_base, spans_in


def _base(name: str) -> int:
    return placeholder_base(hashlib.sha256(name.encode()).hexdigest())


def test_runs_of_placeholders_are_found_picture_by_picture() -> None:
    a, b = _base("a"), _base("b")
    tokens = [1, 2, *(placeholder(a, i) for i in range(16)), 3, *(placeholder(b, i) for i in range(16)), 4]
    assert spans_in(tokens) == [(2, 18, a), (19, 35, b)]
    assert all(picture_of(placeholder(a, i)) == (a, i) for i in range(16))


def test_the_same_picture_twice_in_a_row_is_two_runs() -> None:
    a = _base("a")
    run = [placeholder(a, i) for i in range(4)]
    assert spans_in([7, *run, *run, 8]) == [(1, 5, a), (5, 9, a)]


def test_placeholders_are_never_real_tokens() -> None:
    assert all(placeholder(_base(str(n)), i) < 0 for n in range(100) for i in (0, 255, 4095))
    assert spans_in([0, 1, 2]) == []

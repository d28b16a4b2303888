"""``passes``: how an embedding call's texts are cut into forward passes (padding against per-pass cost)."""

from __future__ import annotations

import random

import pytest

from localgem.engines.embedding.engine import passes


def cost(lengths: list[int], groups: list[list[int]], pass_cost: float) -> float:
    return sum(pass_cost + len(g) * max(lengths[k] for k in g) for g in groups)


@pytest.mark.parametrize("seed", range(20))
def test_every_text_is_in_one_pass_within_the_limits(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(3, 300) for _ in range(rng.randint(1, 150))]
    groups = passes(lengths, 20, budget=1024, max_rows=64)
    assert sorted(k for g in groups for k in g) == list(range(len(lengths)))
    for g in groups:
        assert len(g) <= 64
        assert len(g) == 1 or len(g) * max(lengths[k] for k in g) <= 1024


@pytest.mark.parametrize("seed", range(20))
def test_no_cut_costs_less_than_the_one_chosen(seed: int) -> None:
    """Against fixed-size batches of the length-sorted texts (sentence-transformers' way), every size that fits."""
    rng = random.Random(seed)
    lengths = [rng.randint(8, 45) for _ in range(100)]
    chosen = cost(lengths, passes(lengths, 20, budget=1024, max_rows=64), 20)
    order = sorted(range(len(lengths)), key=lambda k: -lengths[k])
    for size in range(1, 23):  # 22 × 45 ≤ 1024
        fixed = [order[i : i + size] for i in range(0, len(order), size)]
        assert chosen <= cost(lengths, fixed, 20)


def test_free_passes_pad_nothing_and_dear_ones_are_few() -> None:
    lengths = [5, 9, 9, 5, 7, 9, 5]
    free = passes(lengths, 0, budget=1024, max_rows=64)
    assert all(len({lengths[k] for k in g}) == 1 for g in free)
    assert passes(lengths, 10_000, budget=1024, max_rows=64) == [[1, 2, 5, 4, 0, 3, 6]]
    assert passes(lengths, 10_000, budget=1024, max_rows=3) == [[1, 2, 5], [4], [0, 3, 6]]  # less padding
    assert passes([2000, 10], 10_000, budget=1024, max_rows=64) == [[0], [1]]  # one text over the budget: alone
    assert passes([], 20, budget=1024, max_rows=64) == []

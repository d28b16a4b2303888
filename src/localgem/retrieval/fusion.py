"""Reciprocal-rank fusion: one ranking from several (vector similarity, keyword search), each item
scored by ``sum(1 / (k + rank))`` over the rankings it appears in (Cormack et al., 2009; k = 60)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = 60
T = TypeVar("T", bound=Hashable)


def fuse(rankings: Sequence[Sequence[T]], limit: int | None = None, k: int = K) -> list[tuple[T, float]]:
    """Items best first with their fused scores; ties keep the order of the first ranking that has them."""
    scores: dict[T, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    order = {item: i for i, item in enumerate(scores)}
    fused = sorted(scores.items(), key=lambda pair: (-pair[1], order[pair[0]]))
    return fused if limit is None else fused[:limit]

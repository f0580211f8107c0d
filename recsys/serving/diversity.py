"""Maximal marginal relevance over category overlap (the popularity route's diversity)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from recsys.serving.candidates import Candidate

__all__ = ["diversify", "jaccard"]


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)


def diversify(
    ranked: Sequence[Candidate],
    categories: Mapping[str, frozenset[str]],
    k: int,
    trade_off: float,
) -> list[Candidate]:
    """Greedy MMR: ``(1-λ)·relevance - λ·max category overlap with what is picked``.

    Relevance is the candidate's score scaled to [0, 1]. Exact greedy MMR, computed
    lazily: a candidate's penalty only grows as items are picked, so a stale heap entry
    is an upper bound and is re-scored before it is accepted.
    """
    if trade_off <= 0 or len(ranked) <= 1:
        return list(ranked[:k])
    top = max(c.score for c in ranked)
    low = min(c.score for c in ranked)
    span = (top - low) or 1.0
    rel = {c.item_id: (c.score - low) / span for c in ranked}
    cats = {c.item_id: categories.get(c.item_id, frozenset()) for c in ranked}
    order = {c.item_id: i for i, c in enumerate(ranked)}
    by_id = {c.item_id: c for c in ranked}
    heap = [(-(1 - trade_off) * rel[c.item_id], order[c.item_id], c.item_id, 0) for c in ranked]
    heapq.heapify(heap)
    picked: list[Candidate] = []
    while heap and len(picked) < k:
        _neg, pos, item, seen = heapq.heappop(heap)
        if seen < len(picked):
            penalty = max(jaccard(cats[item], cats[p.item_id]) for p in picked)
            value = (1 - trade_off) * rel[item] - trade_off * penalty
            heapq.heappush(heap, (-value, pos, item, len(picked)))
            continue
        picked.append(by_id[item])
    return picked

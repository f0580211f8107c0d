"""Ranking metrics with binary relevance, for one list or averaged over many.

Definitions (``rec`` is the ranked list, ``rel`` the set of relevant items; a repeated
item counts only at its first position):

* HitRate@k = 1 if any of the top k is relevant, else 0.
* Recall@k = |top k ∩ rel| / |rel|.
* NDCG@k = DCG@k / IDCG@k with DCG@k = Σ_{i≤k} [rec_i ∈ rel] / log2(i + 1) and IDCG@k
  the DCG of a perfect list, Σ_{i≤min(|rel|, k)} 1 / log2(i + 1).
* AP@k = Σ_{i≤k} Precision@i · [rec_i ∈ rel] / min(|rel|, k); MAP@k is its mean.
* RR = 1 / rank of the first relevant item in the whole list (0 if none); MRR its mean.

Lists with no relevant items are undefined for all of these and are skipped by the
``mean_*`` helpers (which therefore average over *judged* lists only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence

__all__ = [
    "average_precision_at_k",
    "hit_rate_at_k",
    "mean_metric",
    "ndcg_at_k",
    "recall_at_k",
    "reciprocal_rank",
]


def _dedup(rec: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in rec:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _check(rel: Collection[str], k: int | None = None) -> None:
    if not rel:
        raise ValueError("no relevant items: the metric is undefined")
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def hit_rate_at_k(rec: Sequence[str], rel: Collection[str], k: int) -> float:
    """1.0 when a relevant item is in the top ``k``."""
    _check(rel, k)
    return 1.0 if any(item in rel for item in _dedup(rec)[:k]) else 0.0


def recall_at_k(rec: Sequence[str], rel: Collection[str], k: int) -> float:
    """Share of the relevant items found in the top ``k``."""
    _check(rel, k)
    return sum(1 for item in _dedup(rec)[:k] if item in rel) / len(set(rel))


def ndcg_at_k(rec: Sequence[str], rel: Collection[str], k: int) -> float:
    """Normalised discounted cumulative gain at ``k`` (binary gains)."""
    _check(rel, k)
    dcg = sum(1.0 / math.log2(i + 2) for i, item in enumerate(_dedup(rec)[:k]) if item in rel)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(set(rel)), k)))
    return dcg / ideal


def average_precision_at_k(rec: Sequence[str], rel: Collection[str], k: int) -> float:
    """Average precision at ``k``, normalised by ``min(|rel|, k)``."""
    _check(rel, k)
    hits = 0
    total = 0.0
    for i, item in enumerate(_dedup(rec)[:k], start=1):
        if item in rel:
            hits += 1
            total += hits / i
    return total / min(len(set(rel)), k)


def reciprocal_rank(rec: Sequence[str], rel: Collection[str]) -> float:
    """1 / rank of the first relevant item (0 when none is in the list)."""
    _check(rel)
    for i, item in enumerate(_dedup(rec), start=1):
        if item in rel:
            return 1.0 / i
    return 0.0


def mean_metric(
    metric: Callable[[Sequence[str], Collection[str]], float],
    pairs: Iterable[tuple[Sequence[str], Collection[str]]],
) -> float | None:
    """Mean of ``metric(rec, rel)`` over the pairs with relevant items (None if none)."""
    values = [metric(rec, rel) for rec, rel in pairs if rel]
    return sum(values) / len(values) if values else None

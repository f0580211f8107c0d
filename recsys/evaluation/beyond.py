"""Beyond-accuracy metrics: catalog coverage, intra-list diversity, novelty.

* Coverage = |items recommended in any top k| / catalog size.
* Intra-list diversity (ILD) = mean over a list's item pairs of their distance, averaged
  over lists with at least two comparable items. Distance is ``1 - cosine similarity``
  of item vectors, or the Jaccard distance ``1 - |A & B| / |A | B|`` of category sets
  (0 when both are empty).
* Novelty = mean self-information ``-log2 p(i)`` of recommended items, where
  ``p(i) = max(users(i), 1) / n_users`` is the share of users who interacted with the
  item (an item nobody touched counts as touched by one user: the most novel). Averaged
  per list, then over lists. Higher = less popular = more novel.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "catalog_coverage",
    "category_distance",
    "intra_list_diversity",
    "novelty",
    "vector_distance",
]


def catalog_coverage(lists: Iterable[Sequence[str]], catalog_size: int, k: int) -> float:
    """Share of the catalog that appears in at least one top-``k`` list."""
    if catalog_size <= 0:
        raise ValueError("catalog_size must be positive")
    shown: set[str] = set()
    for rec in lists:
        shown.update(rec[:k])
    return len(shown) / catalog_size


def vector_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``1 - cosine similarity``."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 1.0
    return 1.0 - float(np.dot(a, b)) / (na * nb)


def category_distance(a: Collection[str], b: Collection[str]) -> float:
    """Jaccard distance of two category sets."""
    sa, sb = set(a), set(b)
    union = sa | sb
    return 0.0 if not union else 1.0 - len(sa & sb) / len(union)


def intra_list_diversity(
    lists: Iterable[Sequence[str]],
    k: int,
    *,
    vectors: Mapping[str, np.ndarray] | None = None,
    categories: Mapping[str, Collection[str]] | None = None,
) -> float | None:
    """Mean pairwise distance inside each top-``k`` list, averaged over lists.

    Give ``vectors`` or ``categories``; items missing from the mapping are ignored.
    Returns None when no list has two comparable items.
    """
    if (vectors is None) == (categories is None):
        raise ValueError("give exactly one of vectors or categories")
    per_list = []
    for rec in lists:
        if vectors is not None:
            vs = [vectors[i] for i in rec[:k] if i in vectors]
            dists = [vector_distance(a, b) for a, b in itertools.combinations(vs, 2)]
        else:
            assert categories is not None
            cs = [categories[i] for i in rec[:k] if i in categories]
            dists = [category_distance(a, b) for a, b in itertools.combinations(cs, 2)]
        if dists:
            per_list.append(sum(dists) / len(dists))
    return sum(per_list) / len(per_list) if per_list else None


def novelty(
    lists: Iterable[Sequence[str]], k: int, popularity: Mapping[str, int], n_users: int
) -> float | None:
    """Mean self-information of recommended items (see the module docstring)."""
    if n_users <= 0:
        raise ValueError("n_users must be positive")
    per_list = []
    for rec in lists:
        top = rec[:k]
        if top:
            info = [-math.log2(max(popularity.get(i, 0), 1) / n_users) for i in top]
            per_list.append(sum(info) / len(info))
    return sum(per_list) / len(per_list) if per_list else None

"""Candidate generation per route, and the merge rules that need no training.

* CF: ALS folded in from the user's CF profile (:mod:`recsys.cf.profile`: the events as
  training weighs them), co-visitation neighbours of the newest items to fill; or, with
  ``cf_fold="covisit"``, the co-visitation neighbours of the :data:`COVISIT_SEEDS` newest
  profile items alone, each seed's neighbours as shares of its own co-visits
  (:func:`recsys.cf.covisit.rank_shares`: every seed one vote), ALS not asked.
* CONTENT: pgvector kNN around the query (or the profile of recent/session items) in the
  serving space, unioned with the popular head, scored ``cosine + w · prior`` where the
  prior is log-popularity scaled to [0, 1]. Similarity alone favours obscure items (on
  MovieLens title+genre similarity scores NDCG@10 ≈ 0.01 against ≈ 0.07 for popularity),
  the prior keeps well-liked items in front among similar ones.
* HYBRID: weighted reciprocal-rank fusion (``Σ w / (60 + rank)``) of the CF (w = 1) and
  content lists — rank-based, so the two score scales never need calibrating. The
  weights are each warmth bucket's (:class:`~recsys.serving.config.BucketRoute`, chosen
  by :mod:`recsys.evaluation.route_selection`) or the active policy's.
* POPULARITY: the popular head.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.cf.als import FOLDS
from recsys.items.model import ItemFilters
from recsys.serving.config import CfFold
from recsys.serving.ports import CfSource, ItemSource

__all__ = [
    "COVISIT_SEEDS",
    "Candidate",
    "cf_candidates",
    "content_candidates",
    "popularity_prior",
    "profile_vector",
    "rrf",
]

RRF_K = 60
#: Newest profile items whose co-visitation neighbours make a ``covisit`` CF list (a cold
#: user has at most a handful; one statement reads them all, :mod:`recsys.cf.pg_covisit`).
COVISIT_SEEDS = 5


@dataclass(frozen=True)
class Candidate:
    """One scored candidate and where it came from (``via``: the item it goes with)."""

    item_id: str
    score: float
    source: str
    via: str | None = None


def popularity_prior(popular: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Log-popularity scaled to [0, 1] (the most popular item is 1)."""
    if not popular:
        return {}
    top = max(score for _, score in popular)
    if top <= 0:
        return {}
    scale = math.log1p(top)
    return {item: math.log1p(max(score, 0.0)) / scale for item, score in popular}


async def cf_candidates(
    cf: CfSource,
    recent: Sequence[tuple[str, float]],
    n: int,
    exclude: Collection[str],
    fold: CfFold = "least_squares",
) -> list[Candidate]:
    """ALS first (folded in from all of ``recent`` by ``fold``), co-visitation neighbours
    of the newest items after them; ``fold="covisit"``: the shares-scored co-visitation
    neighbours of the :data:`COVISIT_SEEDS` newest items only (``recent`` is newest first).
    """
    if fold == "covisit":
        seeds = list(dict.fromkeys(item for item, w in recent if w > 0))[:COVISIT_SEEDS]
        found = await cf.covisit(seeds, n, exclude, shares=True) if seeds else []
        return [Candidate(item, score, "covisit", via) for item, score, via in found]
    assert fold in FOLDS
    als = await cf.als(recent, n, exclude, fold)
    out = [Candidate(item, score, "als") for item, score in als]
    seen = {c.item_id for c in out}
    if len(out) < n:
        anchors = list(dict.fromkeys(item for item, _ in recent[:20]))
        for item, score, via in await cf.covisit(anchors, n, exclude):
            if item not in seen:
                out.append(Candidate(item, score, "covisit", via))
                seen.add(item)
    return out[:n]


def profile_vector(
    items: Sequence[str], vectors: dict[str, np.ndarray], half_life: float = 5.0
) -> np.ndarray | None:
    """Mean of the items' vectors, newest weighted most (weight halves every ``half_life``)."""
    rows, weights = [], []
    for position, item in enumerate(items):
        vec = vectors.get(item)
        if vec is not None:
            rows.append(vec / (np.linalg.norm(vec) or 1.0))
            weights.append(0.5 ** (position / half_life))
    if not rows:
        return None
    mean = np.average(np.stack(rows), axis=0, weights=np.asarray(weights))
    norm = float(np.linalg.norm(mean))
    return (mean / norm).astype(np.float32) if norm > 0 else None


async def content_candidates(
    items: ItemSource,
    vector: np.ndarray,
    n: int,
    *,
    filters: ItemFilters | None,
    exclude: Collection[str],
    popular: Sequence[tuple[str, float]],
    popularity_weight: float,
) -> list[Candidate]:
    """Nearest items plus the popular head, scored by cosine plus the popularity prior.

    The kNN search and the head's similarities are one read (one statement on pgvector):
    the head is asked for whole and only its items the search did not find are added,
    which is what asking for those alone after the search gave.
    """
    prior = popularity_prior(popular)
    head = [item for item, _ in popular[:n] if item not in exclude]
    if not (head and popularity_weight > 0):
        head = []
    found, similar = await items.nearest(vector, n, filters=filters, exclude=exclude, also=head)
    near = dict(found)
    near |= {item: sim for item, sim in similar.items() if item not in near}
    scored = [
        Candidate(item, sim + popularity_weight * prior.get(item, 0.0), "content")
        for item, sim in near.items()
    ]
    scored.sort(key=lambda c: (-c.score, c.item_id))
    return scored[:n]


def rrf(
    *lists: Sequence[Candidate], k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[Candidate]:
    """Reciprocal-rank fusion (``Σ w_l / (k + rank_l)``, every ``w_l`` = 1 unless given);
    an item keeps the source (and via) of its best rank."""
    fused: dict[str, float] = {}
    first: dict[str, tuple[int, Candidate]] = {}
    ws = list(weights) if weights is not None else [1.0] * len(lists)
    if len(ws) != len(lists):
        raise ValueError(f"{len(lists)} lists but {len(ws)} weights")
    for ranked, w in zip(lists, ws, strict=True):
        for rank, cand in enumerate(ranked, start=1):
            fused[cand.item_id] = fused.get(cand.item_id, 0.0) + w / (k + rank)
            if cand.item_id not in first or rank < first[cand.item_id][0]:
                first[cand.item_id] = (rank, cand)
    out = [
        Candidate(item, score, first[item][1].source, first[item][1].via)
        for item, score in fused.items()
    ]
    out.sort(key=lambda c: (-c.score, c.item_id))
    return out

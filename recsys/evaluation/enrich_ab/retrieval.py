"""Cosine retrieval in memory, per-query metrics, and the paired bootstrap of a difference.

The A/B compares two embeddings of the same catalog on the same queries, so each query
yields a *pair* of scores (raw, enriched). The confidence interval of the difference
resamples queries with replacement (a paired, percentile bootstrap), which keeps the
pairing and makes no normality assumption: per-query recall on a few relevant items is
far from normal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.evaluation.ranking import ndcg_at_k, recall_at_k, reciprocal_rank

__all__ = [
    "METRICS",
    "QueryScores",
    "bootstrap_delta",
    "rank_items",
    "score_ranking",
]

#: The metrics of one query, names as reported (``k`` filled in).
METRICS = ("recall@{k}", "ndcg@{k}", "mrr")


def rank_items(
    query_vectors: np.ndarray,
    item_vectors: np.ndarray,
    item_ids: Sequence[str],
    exclude: Sequence[Sequence[str]],
) -> list[list[str]]:
    """Every item ranked by cosine similarity to each query (vectors are unit length).

    ``exclude[i]`` are ids that query ``i`` must not get back (items it names).
    Ties are broken by catalog order, so rankings are deterministic.
    """
    if query_vectors.shape[1] != item_vectors.shape[1]:
        raise ValueError(
            f"query dimension {query_vectors.shape[1]} != item dimension {item_vectors.shape[1]}"
        )
    index = {item: i for i, item in enumerate(item_ids)}
    scores = query_vectors @ item_vectors.T
    out: list[list[str]] = []
    for row, banned in zip(scores, exclude, strict=True):
        row = row.astype(np.float64, copy=True)
        for item in banned:
            if item in index:
                row[index[item]] = -np.inf
        order = np.argsort(-row, kind="stable")
        out.append([item_ids[i] for i in order if np.isfinite(row[i])])
    return out


@dataclass(frozen=True)
class QueryScores:
    """The metrics of one query's ranking, and its top ``k``."""

    recall: float
    ndcg: float
    rr: float
    top: tuple[str, ...]

    def as_dict(self, k: int) -> dict[str, float]:
        """Metrics by reported name."""
        return {f"recall@{k}": self.recall, f"ndcg@{k}": self.ndcg, "mrr": self.rr}


def score_ranking(ranking: Sequence[str], relevant: Sequence[str], k: int) -> QueryScores:
    """Recall@k and nDCG@k of the top ``k``; reciprocal rank over the whole ranking."""
    rel = set(relevant)
    return QueryScores(
        recall=recall_at_k(ranking, rel, k),
        ndcg=ndcg_at_k(ranking, rel, k),
        rr=reciprocal_rank(ranking, rel),
        top=tuple(ranking[:k]),
    )


def bootstrap_delta(
    a: Sequence[float],
    b: Sequence[float],
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """Mean of ``a``, of ``b``, of ``b - a`` and the percentile CI of that mean difference.

    Returns ``{"a", "b", "delta", "ci_low", "ci_high", "n"}``; the CI is None for fewer
    than two pairs.
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} != {len(b)}")
    n = len(a)
    if n == 0:
        return {"a": None, "b": None, "delta": None, "ci_low": None, "ci_high": None, "n": 0}
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    diff = y - x
    low = high = None
    if n >= 2:
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, n, size=(resamples, n))
        means = diff[picks].mean(axis=1)
        tail = (1.0 - confidence) / 2 * 100
        low, high = (float(v) for v in np.percentile(means, [tail, 100 - tail]))
    return {
        "a": float(x.mean()),
        "b": float(y.mean()),
        "delta": float(diff.mean()),
        "ci_low": low,
        "ci_high": high,
        "n": n,
    }

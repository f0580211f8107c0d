"""Choosing each warmth bucket's route and fusion weights on a validation split.

A hand-tuned routing constant does not travel to another catalog; a *procedure* does.
This module is the procedure's decision step, shared by the offline benchmark
(``benchmarks/quality_routed``) and whatever produces serving defaults:

1. **Validation split from the training data** (the caller's job): per user, the last
   20 % of their positives held out (:func:`recsys.movielens.temporal_split` on the
   training ratings); the models are trained on the rest; every candidate of the
   declared space (:data:`CANDIDATES`) serves every validation user through the real
   serving path. The cold bucket pools the real cold users with *simulated* cold users
   (users with enough history cut to their first three positives): real cold users
   are too few anywhere to decide on.
2. **Per bucket** (the rule of :mod:`recsys.evaluation.selection`), the *incumbent* is
   the best single route (:data:`SINGLE_ROUTES`: popularity, CF, content, the
   equal-weight hybrid) by mean NDCG@10.
3. The *challenger* is the best of the weighted variants (:data:`FUSIONS`) by mean
   NDCG@10. It replaces the incumbent only when the paired bootstrap interval of
   ``challenger - incumbent`` (users resampled) lies above 0 at the Bonferroni level
   ``1 - alpha / m`` (``m`` variants were compared, alpha = 0.05) — a winner picked out
   of many is flattered by noise, and the correction pays for the picking. Otherwise
   the simpler candidate stays.
4. A bucket with fewer than ``min_users`` validation users adopts no variant; a bucket
   with none gets :data:`EMPTY_BUCKET` (the untuned hybrid).

Selection uses NDCG@10 only; recall@10 is reported beside it. The space is small and
declared here, so that what can be chosen is reviewable and the procedure cannot
overfit a large grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.evaluation.bootstrap import Interval, mean_interval, paired_difference
from recsys.evaluation.selection import ALPHA, MIN_USERS, pick
from recsys.records import Route, WarmthBucket
from recsys.serving.config import BucketRoute, CfFold

__all__ = [
    "CANDIDATES",
    "EMPTY_BUCKET",
    "FUSIONS",
    "SINGLE_ROUTES",
    "BucketChoice",
    "CandidateScore",
    "RouteCandidate",
    "RoutingChoice",
    "choose_bucket",
    "choose_routes",
]


@dataclass(frozen=True)
class RouteCandidate:
    """One way to serve a bucket: a route and its weights (see :class:`BucketRoute`)."""

    name: str
    route: Route
    content_weight: float = 1.0
    popularity_weight: float = 0.5
    cf_fold: CfFold = "least_squares"

    @property
    def bucket_route(self) -> BucketRoute:
        return BucketRoute(self.route, self.content_weight, self.popularity_weight, self.cf_fold)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "route": self.route.value,
            "content_weight": self.content_weight,
            "popularity_weight": self.popularity_weight,
            "cf_fold": self.cf_fold,
        }


def _hybrid(content: float, prior: float, fold: CfFold = "least_squares") -> RouteCandidate:
    suffix = {"least_squares": "", "item_sum": "_sum", "covisit": "_covisit"}[fold]
    return RouteCandidate(
        f"hybrid{suffix}_c{content:g}_p{prior:g}", Route.HYBRID, content, prior, fold
    )


#: The baselines: each route as it is, fusion weights untouched.
SINGLE_ROUTES: tuple[RouteCandidate, ...] = (
    RouteCandidate("popularity", Route.POPULARITY),
    RouteCandidate("cf", Route.CF),
    RouteCandidate("content", Route.CONTENT),
    RouteCandidate("hybrid", Route.HYBRID),
)
#: The variants: the content list's weight against CF's 1 in the fusion (more CF: 0.5;
#: more content and popularity: 2), the popularity prior's weight in the content list
#: (0.5 untuned, 1.5 heavy), and the CF list by the latent item sum instead of the
#: least-squares fold-in (:func:`recsys.cf.als.item_sum`: better for a handful of items),
#: and the CF list made of item-to-item neighbours instead of ALS: the co-visitation
#: neighbours of the newest items, each item's as shares of its own co-visits
#: (``cf_fold="covisit"``, :func:`recsys.serving.candidates.cf_candidates`), alone and in
#: the equal-weight hybrid with the content list.
FUSIONS: tuple[RouteCandidate, ...] = (
    RouteCandidate("content_p1.5", Route.CONTENT, 1.0, 1.5),
    _hybrid(0.5, 0.5),
    _hybrid(2.0, 1.5),
    RouteCandidate("cf_sum", Route.CF, cf_fold="item_sum"),
    _hybrid(0.5, 1.5, "item_sum"),
    _hybrid(1.0, 1.5, "item_sum"),
    RouteCandidate("cf_covisit", Route.CF, cf_fold="covisit"),
    _hybrid(1.0, 0.5, "covisit"),
)
CANDIDATES: tuple[RouteCandidate, ...] = SINGLE_ROUTES + FUSIONS
EMPTY_BUCKET = SINGLE_ROUTES[3]


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's validation figures in one bucket."""

    name: str
    ndcg: Interval
    recall: float
    #: ``candidate - incumbent`` NDCG@10 (None for the incumbent itself).
    versus_incumbent: Interval | None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ndcg@10": round(self.ndcg.mean, 4),
            "ndcg@10_ci95": self.ndcg.rounded(),
            "recall@10": round(self.recall, 4),
        }
        if self.versus_incumbent is not None:
            out["minus_incumbent"] = round(self.versus_incumbent.mean, 4)
            out["minus_incumbent_ci"] = self.versus_incumbent.rounded()
        return out


@dataclass(frozen=True)
class BucketChoice:
    """What the procedure chose for one bucket, and why."""

    bucket: WarmthBucket
    users: int
    chosen: RouteCandidate
    incumbent: str | None
    challenger: str | None
    reason: str
    scores: tuple[CandidateScore, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "chosen": self.chosen.as_json(),
            "incumbent": self.incumbent,
            "challenger": self.challenger,
            "reason": self.reason,
            "candidates": {s.name: s.as_json() for s in self.scores},
        }


@dataclass(frozen=True)
class RoutingChoice:
    """The per-bucket choices: what :class:`~recsys.serving.config.ServingConfig` serves."""

    buckets: Mapping[WarmthBucket, BucketChoice]

    def routes(self) -> dict[WarmthBucket, BucketRoute]:
        return {b: c.chosen.bucket_route for b, c in self.buckets.items()}

    def overrides(self) -> dict[str, BucketRoute]:
        """``ServingConfig`` keyword arguments (``cold=``, ``warming=``, ``warm=``)."""
        return {b.value.lower(): r for b, r in self.routes().items()}

    def as_json(self) -> dict[str, Any]:
        return {b.value.lower(): c.as_json() for b, c in self.buckets.items()}


def choose_bucket(
    bucket: WarmthBucket,
    ndcg: Mapping[str, Sequence[float] | np.ndarray],
    recall: Mapping[str, Sequence[float] | np.ndarray],
    *,
    singles: Sequence[RouteCandidate] = SINGLE_ROUTES,
    fusions: Sequence[RouteCandidate] = FUSIONS,
    alpha: float = ALPHA,
    min_users: int = MIN_USERS,
    seed: int = 0,
) -> BucketChoice:
    """Apply the procedure (module docstring) to one bucket's per-user metrics.

    ``ndcg[name]`` / ``recall[name]``: NDCG@10 / recall@10 per validation user of the
    bucket, in the same user order for every candidate.
    """
    everyone = {c.name: c for c in [*singles, *fusions]}
    if singles and singles[0].name in ndcg and len(ndcg[singles[0].name]) == 0:
        return BucketChoice(bucket, 0, EMPTY_BUCKET, None, None, "no validation users")
    outcome = pick(
        ndcg,
        [c.name for c in singles],
        [c.name for c in fusions],
        alpha=alpha,
        min_users=min_users,
        seed=seed,
    )
    n = len(ndcg[outcome.incumbent])
    level = 1.0 - alpha / max(len(fusions), 1)
    scores = tuple(
        CandidateScore(
            name,
            mean_interval(ndcg[name], seed=seed),
            float(np.mean(recall[name])),
            None
            if name == outcome.incumbent
            else paired_difference(
                ndcg[name], ndcg[outcome.incumbent], confidence=level, seed=seed
            ),
        )
        for name in everyone
    )
    return BucketChoice(
        bucket,
        n,
        everyone[outcome.chosen],
        outcome.incumbent,
        outcome.challenger,
        outcome.reason,
        scores,
    )


def choose_routes(
    per_bucket: Mapping[
        WarmthBucket,
        tuple[
            Mapping[str, Sequence[float] | np.ndarray], Mapping[str, Sequence[float] | np.ndarray]
        ],
    ],
    **options: Any,
) -> RoutingChoice:
    """:func:`choose_bucket` for each bucket's ``(ndcg, recall)`` per-user metrics."""
    return RoutingChoice(
        {
            bucket: choose_bucket(bucket, nd, rc, **options)
            for bucket, (nd, rc) in per_bucket.items()
        }
    )
